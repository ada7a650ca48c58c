//! The kernel's list syntax (`0-3,7`), which cpu and NUMA node lists in the config share.

/// The numbers of `list`, sorted and without duplicates, or what is wrong with it; `item` names
/// what the numbers are, for the message.
pub fn parse_number_list(list: &str, item: &str) -> Result<Vec<usize>, String> {
    let mut numbers = Vec::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let parse = |number: &str| {
            number
                .parse::<usize>()
                .map_err(|_| format!("{list:?}: {number:?} is not a {item} number"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("{list:?}: range {part} is reversed"));
        }
        numbers.extend(first..=last);
    }
    numbers.sort_unstable();
    numbers.dedup();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_numbers_and_ranges() {
        assert_eq!(parse_number_list("0", "node").unwrap(), [0]);
        assert_eq!(
            parse_number_list("7-8,0-2,5,1", "cpu").unwrap(),
            [0, 1, 2, 5, 7, 8]
        );
    }

    #[test]
    fn rejects_malformed_lists_naming_the_item() {
        assert!(parse_number_list("", "node").is_err());
        assert!(
            parse_number_list("3-1", "node")
                .unwrap_err()
                .contains("reversed")
        );
        let err = parse_number_list("a", "node").unwrap_err();
        assert!(err.contains("not a node number"), "{err}");
        assert!(parse_number_list("1,,2", "cpu").is_err());
        assert!(parse_number_list("-1", "cpu").is_err());
    }
}
