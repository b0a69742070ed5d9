"""A repo and a script of every kind of edit an agent can make to it, for the tests that read an
agent's workspace more than one way (an archive, this host's files, an overlay's upper dir): each
way must give the same tree."""

from __future__ import annotations

from pytest_oneshot.change import Change

EDITED_FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    **{name: f"{name}\n" for name in ("keep.txt", "edit.txt", "gone.txt", "touched.txt", "chmod_x.txt")},
    **{name: f"{name}\n" for name in ("same_again.txt", "link_me.txt", "file_to_dir", "deep/er/still/file.txt")},
    **{f"{directory}/{name}": "x\n" for directory in ("dir_gone", "dir_remade", "moved_dir") for name in ("a", "n/b")},
    "dir_to_file/x.txt": "x\n",
    "dir_gone_not/a": "a sibling whose name starts as a deleted dir's does\n",
}
# Everything an agent can do to its files (and, on a docker tree, what overlayfs makes of it in its upper dir).
AGENT_EDITS = r"""
set -e
echo new > edit.txt
rm gone.txt
rm -r dir_gone
rm -r dir_remade && mkdir dir_remade && echo again > dir_remade/a && echo c > dir_remade/c
rm -r dir_to_file && echo now-a-file > dir_to_file
rm file_to_dir && mkdir file_to_dir && echo inside > file_to_dir/in.txt
mv moved_dir renamed_dir
touch touched.txt
chmod +x chmod_x.txt
echo same_again.txt > same_again.txt
rm link_me.txt && ln -s edit.txt link_me.txt && ln -s ../nowhere new_link
mkdir -p new/deeper empty_new __pycache__ .git/objects && echo n > new/deeper/n.txt
echo x > __pycache__/m.pyc && echo x > m.pyc && echo x > .git/objects/o
rm deep/er/still/file.txt
mkfifo fifo
printf x > "$(printf 'bad\377name')"
head -c 3000 /dev/zero > big.bin
"""


def assert_the_edits_are_the_change(change: Change) -> None:
    """The change :data:`AGENT_EDITS` makes to :data:`EDITED_FILES` (with a 2000-byte cap per file)."""
    assert set(change.files) == {
        "edit.txt", "dir_remade/a", "dir_remade/c", "dir_to_file", "file_to_dir/in.txt", "renamed_dir/a",
        "renamed_dir/n/b", "chmod_x.txt", "link_me.txt", "new_link", "new/deeper/n.txt",
    }  # fmt: skip
    assert set(change.deleted) == {
        "gone.txt", "dir_gone/a", "dir_gone/n/b", "dir_remade/n/b", "dir_to_file/x.txt", "file_to_dir",
        "moved_dir/a", "moved_dir/n/b", "deep/er/still/file.txt",
    }  # fmt: skip
    assert set(change.left_out) == {"fifo", "bad\\xffname", "big.bin"}
