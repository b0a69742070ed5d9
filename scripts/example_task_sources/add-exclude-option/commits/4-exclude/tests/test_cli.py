import io

from textstats.cli import main


def test_cli_prints_count_and_top_words(tmp_path, capsys):
    path = tmp_path / "in.txt"
    path.write_text("b a b c b a", encoding="utf-8")
    assert main([str(path), "--top", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["words: 6", "     3  b", "     2  a"]


def test_cli_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("one two two"))
    assert main([]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["words: 3", "     2  two"]


def test_cli_exclude_option(tmp_path, capsys):
    path = tmp_path / "in.txt"
    path.write_text("the cat and the hat and the mat", encoding="utf-8")
    assert main([str(path), "--top", "2", "--exclude", "the, AND"]) == 0
    assert capsys.readouterr().out.splitlines() == ["words: 8", "     1  cat", "     1  hat"]
