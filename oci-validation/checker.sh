#!/bin/sh
# The suite's checker inside the container (installed as /oci-check): busybox sh and applets
# only, so it runs in the busybox rootfs on any architecture with no build step. Each command
# prints one line the Rust side compares; anything else the cases read straight from /proc.
#
#   oci-check device PATH       TYPE MAJOR MINOR MODE UID GID of what PATH leads to (TYPE:
#                               c b p, or - for anything else; MAJOR/MINOR - but for devices)
#   oci-check readable PATH     yes | no   (a directory is readable when it lists something, a
#                               file or char device when one byte can be read)
#   oci-check writable PATH     yes | no   (a file can be opened for writing, a directory can
#                               take a new file)
#   oci-check limit NAME        SOFT HARD  (NAME as in /proc/self/limits, e.g. "Max open files")
#   oci-check propagation-probe
#                               how a mount made under / shows through a bind of /:
#                               "unbindable" (/ cannot be bound), "exposed" or "hidden"
set -u

device() {
	path=$1
	[ -e "$path" ] || [ -L "$path" ] || { echo missing; return; }
	set -- $(stat -L -c '%F %t %T %a %u %g' "$path" | sed 's/character special file/c/;
		s/block special file/b/; s/fifo/p/; s/^[a-z ]*file /- /;
		s/^directory /- /; s/^symbolic link /- /')
	case $1 in
	c | b) echo "$1 $((0x$2)) $((0x$3)) $4 $5 $6" ;;
	*) echo "$1 - - $4 $5 $6" ;;
	esac
}

readable() {
	if [ -d "$1" ]; then
		[ -n "$(ls -A "$1" 2>/dev/null)" ] && echo yes || echo no
	else
		[ -n "$(head -c 1 "$1" 2>/dev/null | od -An -c)" ] && echo yes || echo no
	fi
}

writable() {
	if [ -d "$1" ]; then
		probe=$(mktemp -q "$1/oci-check.XXXXXX") && rm -f "$probe" && echo yes || echo no
	else
		(: >>"$1") 2>/dev/null && echo yes || echo no
	fi
}

limit() {
	grep "^$1 " /proc/self/limits | sed "s/^$1 *//" | awk '{ print $1, $2 }'
}

propagation_probe() {
	target=/oci-probe-target source=/oci-probe-source point=/oci-probe-point
	mkdir -p $target $source $point && : >$source/file
	if ! mount --rbind / $target 2>/dev/null; then
		echo unbindable
	elif mount --bind $source $point && [ -e $target$point/file ]; then
		echo exposed
	else
		echo hidden
	fi
	umount -l $point 2>/dev/null
	umount -l $target 2>/dev/null
	rm -rf $target $source $point
}

case ${1:-} in
device) device "$2" ;;
readable) readable "$2" ;;
writable) writable "$2" ;;
limit) limit "$2" ;;
propagation-probe) propagation_probe ;;
*)
	echo "oci-check: unknown command ${1:-}" >&2
	exit 2
	;;
esac
