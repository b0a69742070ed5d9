"""Shell scripts that do the Sandbox contract's file and process work with commands alone: POSIX sh and
/proc, so they run in any image, for backends whose files and processes the host cannot reach
directly (a container through the engine's exec, a remote Modal Sandbox). Each says how it is called."""

# `sh -c WRITE_FILE sh WORKSPACE RELPATH` with the data on stdin: walk down from the workspace,
# replacing any symlink or file on the way with a real directory, so the write stays inside.
WRITE_FILE = r"""
set -e
cd -P "$1"; rel=$2; name=${rel##*/}; dir=
case "$rel" in */*) dir=${rel%/*} ;; esac
IFS=/; set -f
for part in $dir; do
  if [ -L "$part" ] || { [ -e "$part" ] && [ ! -d "$part" ]; }; then rm -f -- "$part"; fi
  [ -d "$part" ] || mkdir -- "$part"
  cd -- "$part"
done
if [ -L "$name" ] || [ -d "$name" ]; then rm -rf -- "$name"; fi
cat >"$name"
"""
# `sh -c READ_FILE sh WORKSPACE ABSPATH`: exit 3 = symlink or outside the workspace, 4 = missing, 5 = directory.
READ_FILE = r"""
[ -L "$2" ] && exit 3
[ -e "$2" ] || exit 4
case "$(readlink -f -- "$2")" in "$1"/*) ;; *) exit 3 ;; esac
[ -d "$2" ] && exit 5
exec cat -- "$2"
"""
# `sh -c LAUNCH sh RECORD_PID PIDFILE CMD...`: once the host sends a newline (stdin's first line), CMD
# writes its pid and /proc stat line (start time) to PIDFILE, so a timeout can find its whole tree, and runs as the
# leader of a new session when the image has setsid (as a child, which is never a group leader, so
# setsid need not fork). The rest of the exec's stdin is CMD's.
RECORD_PID = 'read -r s </proc/$$/stat; echo "$$ $s" >"$0"; exec "$@"'
LAUNCH = (
    "IFS= read -r _; r=$1 p=$2; shift 2; "
    'if command -v setsid >/dev/null 2>&1; then setsid sh -c "$r" "$p" "$@"; exit $?; fi; '
    'exec sh -c "$r" "$p" "$@"'
)
# `sh -c KILL_TREE sh PIDFILE`: stop ROOT's launcher and every process below ROOT, in its session, or orphaned
# (reparented to init) since ROOT started, so no parent dies before its children are
# found; then kill them all. POSIX sh and /proc only, as the image may be anyone's.
KILL_TREE = r"""
read -r root line 2>/dev/null <"$1" || exit 0
set -- ${line##*") "}; since=${20}; all=" $root "
[ "$2" -gt 1 ] && all=" $2$all"  # our launcher shell: dying first, it reports nothing
kill -STOP $all 2>/dev/null
changed=1
while [ -n "$changed" ]; do
  changed=
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    pid=${line%% *}
    set -- ${line##*") "}
    case "$all" in *" $pid "*) continue ;; esac
    case "$all" in
      *" $2 "*) ;;
      *) [ "$4" = "$root" ] || { [ "$2" = 1 ] && [ "${20}" -ge "$since" ]; } || continue ;;
    esac
    all="$all$pid "; kill -STOP "$pid" 2>/dev/null; changed=1
  done
done
kill -KILL $all 2>/dev/null
exit 0
"""
