//! The D-Bus wire format, as the specification's "Message Protocol" section defines it: every
//! value is aligned to its size (structs and dict entries to 8) from the message's start, and
//! the body starts 8-aligned, so a body marshals as if alone. berth writes little-endian and
//! reads either byte order (a message keeps its sender's).
//!
//! Only the types berth's calls to systemd use are here.

use anyhow::{Context, Result, bail, ensure};

/// The spec's maximum message size (128 MiB): a longer announced length is a broken peer.
const MAX_MESSAGE: usize = 1 << 27;
/// The fixed part of a header: endianness, type, flags, version, body length, serial, and
/// the length of the header field array.
pub const PREFIX: usize = 16;

/// Message types (the header's second byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MethodCall = 1,
    MethodReturn = 2,
    Error = 3,
    Signal = 4,
}

/// Header field codes.
const PATH: u8 = 1;
const INTERFACE: u8 = 2;
const MEMBER: u8 = 3;
const ERROR_NAME: u8 = 4;
const REPLY_SERIAL: u8 = 5;
const DESTINATION: u8 = 6;
const SENDER: u8 = 7;
const SIGNATURE: u8 = 8;
const UNIX_FDS: u8 = 9;

/// Marshals values into a buffer that starts 8-aligned (a message, or a body).
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn pad(&mut self, align: usize) {
        self.buf.resize(self.buf.len().next_multiple_of(align), 0);
    }

    /// `y`
    pub fn byte(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// `u`
    pub fn u32(&mut self, value: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// `b`: a 32-bit 0 or 1.
    pub fn bool(&mut self, value: bool) {
        self.u32(value.into());
    }

    /// `t`
    pub fn u64(&mut self, value: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// `s` and `o`: a 32-bit length, the bytes, a NUL.
    pub fn str(&mut self, value: &str) {
        self.u32(u32::try_from(value.len()).expect("a string beyond 4 GiB"));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// `g`: an 8-bit length, the bytes, a NUL.
    pub fn signature(&mut self, value: &str) {
        self.byte(u8::try_from(value.len()).expect("signatures are at most 255 bytes"));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// An array whose elements align to `element_align`: the 32-bit byte length counts
    /// neither itself nor the padding to the first element, which is there even when the
    /// array is empty.
    pub fn array(&mut self, element_align: usize, elements: impl FnOnce(&mut Writer)) {
        self.u32(0);
        let length_at = self.buf.len() - 4;
        self.pad(element_align);
        let start = self.buf.len();
        elements(self);
        let length = u32::try_from(self.buf.len() - start).expect("an array beyond 4 GiB");
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// A struct (or dict entry): 8-aligned, then its fields.
    pub fn structure(&mut self, fields: impl FnOnce(&mut Writer)) {
        self.pad(8);
        fields(self);
    }

    /// `v`: the value's signature, then the value.
    pub fn variant(&mut self, signature: &str, value: impl FnOnce(&mut Writer)) {
        self.signature(signature);
        value(self);
    }
}

/// Unmarshals values from a buffer that starts 8-aligned.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], big_endian: bool) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            big_endian,
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = (self.pos.checked_add(len)).filter(|end| *end <= self.buf.len());
        let Some(end) = end else {
            bail!(
                "D-Bus message: a value runs past the end (at byte {})",
                self.pos
            );
        };
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn align(&mut self, align: usize) -> Result<()> {
        self.take(self.pos.next_multiple_of(align) - self.pos)
            .map(drop)
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// `y`
    pub fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// `u`
    pub fn u32(&mut self) -> Result<u32> {
        self.align(4)?;
        let bytes = self.take(4)?.try_into().expect("took 4 bytes");
        Ok(match self.big_endian {
            true => u32::from_be_bytes(bytes),
            false => u32::from_le_bytes(bytes),
        })
    }

    /// The bytes of a string and its NUL.
    fn text(&mut self, len: usize) -> Result<String> {
        let bytes = self.take(len)?;
        ensure!(self.byte()? == 0, "D-Bus message: a string without its NUL");
        String::from_utf8(bytes.to_vec()).context("D-Bus message: a string is not UTF-8")
    }

    /// `s` and `o`
    pub fn str(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    /// `g`
    pub fn signature(&mut self) -> Result<String> {
        let len = self.byte()?.into();
        self.text(len)
    }

    /// A struct's start.
    pub fn structure(&mut self) -> Result<()> {
        self.align(8)
    }

    /// `v` holding a `signature`: reads its signature and checks it.
    pub fn variant(&mut self, signature: &str) -> Result<()> {
        let found = self.signature()?;
        ensure!(
            found == signature,
            "D-Bus message: a variant holds {found:?}, not {signature:?}"
        );
        Ok(())
    }
}

/// A header field's value.
#[derive(Debug, PartialEq, Eq)]
enum Field<'a> {
    Str(&'a str),
    ObjectPath(&'a str),
    Signature(&'a str),
    /// Only in replies, which berth reads: the tests write some.
    #[cfg(test)]
    U32(u32),
}

impl Field<'_> {
    fn write(&self, w: &mut Writer) {
        match self {
            Field::Str(s) => w.variant("s", |w| w.str(s)),
            Field::ObjectPath(o) => w.variant("o", |w| w.str(o)),
            Field::Signature(g) => w.variant("g", |w| w.signature(g)),
            #[cfg(test)]
            Field::U32(u) => w.variant("u", |w| w.u32(*u)),
        }
    }
}

/// Where a method call goes: its destination (a bus name), object, interface and method.
pub struct Call<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
}

/// A method call, marshalled: the header (fields `a(yv)`), padding to 8, then `body`, whose
/// D-Bus signature is `signature`.
pub fn method_call(serial: u32, call: &Call, signature: &str, body: &[u8]) -> Vec<u8> {
    let mut fields = vec![
        (PATH, Field::ObjectPath(call.path)),
        (DESTINATION, Field::Str(call.destination)),
        (INTERFACE, Field::Str(call.interface)),
        (MEMBER, Field::Str(call.member)),
    ];
    if !signature.is_empty() {
        fields.push((SIGNATURE, Field::Signature(signature)));
    }
    message(Kind::MethodCall, serial, &fields, body)
}

fn message(kind: Kind, serial: u32, fields: &[(u8, Field)], body: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.byte(b'l');
    w.byte(kind as u8);
    w.byte(0); // flags: a reply is expected; the destination may be started
    w.byte(1); // protocol version
    w.u32(u32::try_from(body.len()).expect("a body beyond 4 GiB"));
    w.u32(serial);
    w.array(8, |w| {
        for (code, value) in fields {
            w.structure(|w| {
                w.byte(*code);
                value.write(w);
            });
        }
    });
    w.pad(8);
    let mut bytes = w.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A received message's header and body.
#[derive(Debug)]
pub struct Message {
    pub kind: Kind,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
    big_endian: bool,
}

/// The whole length of a message from its first [`PREFIX`] bytes.
pub fn message_length(prefix: &[u8; PREFIX]) -> Result<usize> {
    let big_endian = endianness(prefix[0])?;
    let mut r = Reader::new(prefix, big_endian);
    r.take(4)?;
    let body = r.u32()? as usize;
    r.u32()?; // serial
    let fields = r.u32()? as usize;
    let length = (PREFIX + fields).next_multiple_of(8) + body;
    ensure!(
        length <= MAX_MESSAGE,
        "D-Bus message: {length} bytes announced, beyond the limit of {MAX_MESSAGE}"
    );
    Ok(length)
}

fn endianness(flag: u8) -> Result<bool> {
    match flag {
        b'l' => Ok(false),
        b'B' => Ok(true),
        other => bail!("D-Bus message: {other:#x} is no endianness flag"),
    }
}

impl Message {
    /// Parses a whole message (its length from [`message_length`]).
    pub fn parse(bytes: &[u8]) -> Result<Message> {
        let mut r = Reader::new(bytes, endianness(bytes.first().copied().unwrap_or(0))?);
        r.byte()?;
        let kind = match r.byte()? {
            1 => Kind::MethodCall,
            2 => Kind::MethodReturn,
            3 => Kind::Error,
            4 => Kind::Signal,
            other => bail!("D-Bus message: unknown type {other}"),
        };
        r.take(2)?; // flags, version
        let body_length = r.u32()? as usize;
        r.u32()?; // serial
        let fields_length = r.u32()? as usize;
        let fields_end = r.pos + fields_length;
        let mut message = Message {
            kind,
            reply_serial: None,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            signature: String::new(),
            body: Vec::new(),
            big_endian: r.big_endian,
        };
        while r.pos < fields_end {
            r.structure()?;
            let code = r.byte()?;
            message.read_field(code, &mut r)?;
        }
        ensure!(r.pos == fields_end, "D-Bus message: header fields overrun");
        r.align(8)?;
        message.body = r.take(body_length)?.to_vec();
        ensure!(r.at_end(), "D-Bus message: bytes after the body");
        Ok(message)
    }

    fn read_field(&mut self, code: u8, r: &mut Reader) -> Result<()> {
        let signature = r.signature()?;
        let string = |r: &mut Reader| r.str().map(Some);
        match (code, signature.as_str()) {
            (PATH, "o") => self.path = string(r)?,
            (INTERFACE, "s") => self.interface = string(r)?,
            (MEMBER, "s") => self.member = string(r)?,
            (ERROR_NAME, "s") => self.error_name = string(r)?,
            (REPLY_SERIAL, "u") => self.reply_serial = Some(r.u32()?),
            (SIGNATURE, "g") => self.signature = r.signature()?,
            (DESTINATION | SENDER, "s") => drop(r.str()?),
            (UNIX_FDS, "u") => bail!("D-Bus message: file descriptors were passed, unasked"),
            // Fields berth does not know are ignored, as the spec says; one that is no
            // basic string or number cannot be skipped without its whole type.
            (_, "s" | "o") => drop(r.str()?),
            (_, "u") => drop(r.u32()?),
            (_, "g") => drop(r.signature()?),
            (code, signature) => bail!("D-Bus message: header field {code} of type {signature}"),
        }
        Ok(())
    }

    /// A reader of the body, which must have `signature`.
    pub fn body(&self, signature: &str) -> Result<Reader<'_>> {
        ensure!(
            self.signature == signature,
            "D-Bus message {}: the body is {:?}, not {signature:?}",
            self.member.as_deref().unwrap_or("(reply)"),
            self.signature
        );
        Ok(Reader::new(&self.body, self.big_endian))
    }

    /// An error reply's message: its body's first string, if it has one.
    pub fn error_message(&self) -> String {
        let mut r = Reader::new(&self.body, self.big_endian);
        match self.signature.starts_with('s') {
            true => r.str().unwrap_or_default(),
            false => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write` marshals after one byte, which puts every aligned type off its alignment.
    fn after_a_byte(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        w.byte(0xee);
        write(&mut w);
        w.into_bytes()
    }

    #[test]
    fn basic_types_align_to_their_size_little_endian() {
        assert_eq!(
            after_a_byte(|w| w.u32(0x0102_0304)),
            [0xee, 0, 0, 0, 4, 3, 2, 1]
        );
        assert_eq!(after_a_byte(|w| w.bool(true)), [0xee, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(after_a_byte(|w| w.bool(false)), [0xee, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            after_a_byte(|w| w.u64(0x0102_0304_0506_0708)),
            [0xee, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn strings_and_paths_have_a_u32_length_and_a_nul_signatures_a_byte_length() {
        assert_eq!(
            after_a_byte(|w| w.str("ab")),
            [0xee, 0, 0, 0, 2, 0, 0, 0, b'a', b'b', 0]
        );
        // An object path is marshalled as a string.
        assert_eq!(
            after_a_byte(|w| w.str("/o")),
            [0xee, 0, 0, 0, 2, 0, 0, 0, b'/', b'o', 0]
        );
        assert_eq!(
            after_a_byte(|w| w.signature("as")),
            [0xee, 2, b'a', b's', 0]
        );
    }

    #[test]
    fn arrays_count_their_bytes_but_not_the_padding_before_the_first_element() {
        let strings = after_a_byte(|w| {
            w.array(4, |w| {
                w.str("a");
                w.str("bc");
            })
        });
        #[rustfmt::skip]
        let expected = [
            0xee, 0, 0, 0,
            15, 0, 0, 0, // as: "a" 4+2 bytes, padding 2, "bc" 4+3 bytes
            1, 0, 0, 0, b'a', 0, 0, 0,
            2, 0, 0, 0, b'b', b'c', 0,
        ];
        assert_eq!(strings, expected);
        let pids = after_a_byte(|w| w.array(4, |w| [1, 2].into_iter().for_each(|p| w.u32(p))));
        assert_eq!(pids, [0xee, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        let bytes = after_a_byte(|w| w.array(1, |w| [0xff, 1].into_iter().for_each(|b| w.byte(b))));
        assert_eq!(bytes, [0xee, 0, 0, 0, 2, 0, 0, 0, 0xff, 1]);
    }

    #[test]
    fn an_array_of_structs_pads_to_8_even_when_empty() {
        let mut w = Writer::default();
        w.array(8, |w| {
            w.structure(|w| {
                w.str("x");
                w.str("y");
            })
        });
        #[rustfmt::skip]
        let expected = [
            14, 0, 0, 0, 0, 0, 0, 0, // a(ss) of 14 bytes, padding to the struct
            1, 0, 0, 0, b'x', 0, 0, 0,
            1, 0, 0, 0, b'y', 0,
        ];
        assert_eq!(w.into_bytes(), expected);
        // a(sa(sv)) without elements: the length, then the padding all the same.
        let mut w = Writer::default();
        w.array(8, |_| {});
        assert_eq!(w.into_bytes(), [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn variants_carry_their_signature_and_align_the_value() {
        assert_eq!(
            after_a_byte(|w| w.variant("u", |w| w.u32(7))),
            [0xee, 1, b'u', 0, 7, 0, 0, 0]
        );
        let mut w = Writer::default();
        w.array(8, |w| {
            w.structure(|w| {
                w.str("A");
                w.variant("b", |w| w.bool(true));
            })
        });
        #[rustfmt::skip]
        let expected = [
            16, 0, 0, 0, 0, 0, 0, 0, // a(sv)
            1, 0, 0, 0, b'A', 0, // s
            1, b'b', 0, 0, 0, 0, 1, 0, 0, 0, // v: signature "b", padding, true
        ];
        assert_eq!(w.into_bytes(), expected);
    }

    #[test]
    fn hello_is_the_header_the_spec_describes() {
        let call = Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
        };
        let mut expected: Vec<u8> = vec![b'l', 1, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0];
        expected.extend([110, 0, 0, 0]); // the fields: 126 - 16 bytes
        expected.extend([1, 1, b'o', 0, 21, 0, 0, 0]); // PATH, at 16
        expected.extend(b"/org/freedesktop/DBus\0\0\0"); // to 48
        expected.extend([6, 1, b's', 0, 20, 0, 0, 0]); // DESTINATION
        expected.extend(b"org.freedesktop.DBus\0\0\0\0"); // to 80
        expected.extend([2, 1, b's', 0, 20, 0, 0, 0]); // INTERFACE
        expected.extend(b"org.freedesktop.DBus\0\0\0\0"); // to 112
        expected.extend([3, 1, b's', 0, 5, 0, 0, 0]); // MEMBER
        expected.extend(b"Hello\0\0\0"); // 126, padded to 128: no body
        assert_eq!(method_call(7, &call, "", &[]), expected);
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let call = Call {
            destination: "org.freedesktop.systemd1",
            path: "/org/freedesktop/systemd1",
            interface: "org.freedesktop.systemd1.Manager",
            member: "StopUnit",
        };
        let mut body = Writer::default();
        body.str("a.scope");
        body.str("replace");
        let bytes = method_call(3, &call, "ss", &body.into_bytes());
        let prefix = bytes[..PREFIX].try_into().unwrap();
        assert_eq!(message_length(prefix).unwrap(), bytes.len());
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.kind, Kind::MethodCall);
        assert_eq!(message.path.as_deref(), Some(call.path));
        assert_eq!(message.interface.as_deref(), Some(call.interface));
        assert_eq!(message.member.as_deref(), Some("StopUnit"));
        let mut r = message.body("ss").unwrap();
        assert_eq!(r.str().unwrap(), "a.scope");
        assert_eq!(r.str().unwrap(), "replace");
        assert!(r.at_end());
        assert!(message.body("s").is_err());
    }

    #[test]
    fn an_error_reply_has_its_name_serial_and_message() {
        let mut body = Writer::default();
        body.str("Unit x.scope not loaded.");
        let fields = [
            (
                ERROR_NAME,
                Field::Str("org.freedesktop.systemd1.NoSuchUnit"),
            ),
            (REPLY_SERIAL, Field::U32(9)),
            (DESTINATION, Field::Str(":1.7")),
            (SIGNATURE, Field::Signature("s")),
            (SENDER, Field::Str(":1.0")),
        ];
        let message = Message::parse(&message(Kind::Error, 4, &fields, &body.into_bytes()));
        let message = message.unwrap();
        assert_eq!(message.kind, Kind::Error);
        assert_eq!(message.reply_serial, Some(9));
        assert_eq!(
            message.error_name.as_deref(),
            Some("org.freedesktop.systemd1.NoSuchUnit")
        );
        assert_eq!(message.error_message(), "Unit x.scope not loaded.");
    }

    #[test]
    fn a_job_removed_signal_has_its_job_and_result() {
        let mut body = Writer::default();
        body.u32(42);
        body.str("/org/freedesktop/systemd1/job/42");
        body.str("berth-c1.scope");
        body.str("done");
        let fields = [
            (PATH, Field::ObjectPath("/org/freedesktop/systemd1")),
            (INTERFACE, Field::Str("org.freedesktop.systemd1.Manager")),
            (MEMBER, Field::Str("JobRemoved")),
            (SIGNATURE, Field::Signature("uoss")),
        ];
        let bytes = message(Kind::Signal, 11, &fields, &body.into_bytes());
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.kind, Kind::Signal);
        assert_eq!(message.member.as_deref(), Some("JobRemoved"));
        let mut r = message.body("uoss").unwrap();
        assert_eq!(r.u32().unwrap(), 42);
        assert_eq!(r.str().unwrap(), "/org/freedesktop/systemd1/job/42");
        assert_eq!(r.str().unwrap(), "berth-c1.scope");
        assert_eq!(r.str().unwrap(), "done");
        assert!(r.at_end());
    }

    #[test]
    fn a_big_endian_reply_and_a_variant_read_back() {
        // Properties.Get's reply, from a big-endian peer: v holding s.
        #[rustfmt::skip]
        let bytes = [
            b'B', 2, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 15,
            5, 1, b'u', 0, 0, 0, 0, 3, // REPLY_SERIAL 3
            8, 1, b'g', 0, 1, b'v', 0, 0, // SIGNATURE "v", padding
            1, b's', 0, 0, 0, 0, 0, 1, b'/', 0, // the body: v, "/"
        ];
        assert_eq!(
            message_length(bytes[..PREFIX].try_into().unwrap()).unwrap(),
            42
        );
        let message = Message::parse(&bytes[..]).unwrap();
        assert_eq!(message.reply_serial, Some(3));
        let mut r = message.body("v").unwrap();
        r.variant("s").unwrap();
        assert_eq!(r.str().unwrap(), "/");
    }

    #[test]
    fn truncated_and_oversized_messages_are_errors() {
        let call = Call {
            destination: "d.e",
            path: "/",
            interface: "i.f",
            member: "M",
        };
        let bytes = method_call(1, &call, "", &[]);
        assert!(Message::parse(&bytes[..bytes.len() - 9]).is_err());
        let mut huge = [0u8; PREFIX];
        huge[0] = b'l';
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(message_length(&huge).is_err());
    }
}
