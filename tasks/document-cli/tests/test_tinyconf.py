import pytest

import tinyconf
from tinyconf.cli import main

SAMPLE = """\
# app settings
debug = yes
name = demo app

[db]
host = localhost
port = 5432
; old: port = 5433
"""


def test_parse_sections_and_comments():
    assert tinyconf.parse(SAMPLE) == {"debug": "yes", "name": "demo app", "db.host": "localhost", "db.port": "5432"}


def test_parse_rejects_lines_without_equals():
    with pytest.raises(tinyconf.ConfigError, match="^line 2: expected 'key = value'"):
        tinyconf.parse("a = 1\njunk\n")


def test_get_with_types():
    config = tinyconf.parse(SAMPLE)
    assert tinyconf.get(config, "db.port", as_type="int") == 5432
    assert tinyconf.get(config, "debug", as_type="bool") is True
    assert tinyconf.get(config, "name") == "demo app"
    assert tinyconf.get(config, "missing", default=7) == 7


def test_bool_conversion_rejects_junk():
    with pytest.raises(tinyconf.ConfigError, match="not a boolean"):
        tinyconf.convert("maybe", "bool")


def test_dump_round_trip(tmp_path):
    config = tinyconf.parse(SAMPLE)
    text = tinyconf.dump(config)
    assert text.startswith("debug = yes\nname = demo app\n\n[db]\n")
    path = tmp_path / "out.conf"
    path.write_text(text, encoding="utf-8")
    assert tinyconf.load(path) == config
    assert tinyconf.dump(config, format="json").startswith('{\n  "db.host": "localhost"')


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "app.conf"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def test_cli_get(conf, capsys):
    assert main(["get", str(conf), "db.port", "--type", "int"]) == 0
    assert main(["get", str(conf), "debug", "--type", "bool"]) == 0
    assert capsys.readouterr().out == "5432\ntrue\n"


def test_cli_get_missing_key(conf, capsys):
    assert main(["get", str(conf), "db.user"]) == 1
    assert "no key 'db.user'" in capsys.readouterr().err
    assert main(["get", str(conf), "db.user", "--default", "admin"]) == 0
    assert capsys.readouterr().out == "admin\n"


def test_set_value_updates_and_keeps_others(conf):
    tinyconf.set_value(conf, "db.port", "6543")
    config = tinyconf.load(conf)
    assert config["db.port"] == "6543"
    assert config["db.host"] == "localhost"


def test_cli_set_creates_only_when_asked(tmp_path, capsys):
    path = tmp_path / "new.conf"
    assert main(["set", str(path), "log.level", "debug"]) == 2
    assert not path.exists()
    assert main(["set", str(path), "log.level", "debug", "--create"]) == 0
    assert path.read_text(encoding="utf-8") == "[log]\nlevel = debug\n"


def test_cli_keys_with_prefix(conf, capsys):
    assert main(["keys", str(conf), "--prefix", "db."]) == 0
    assert capsys.readouterr().out == "db.host\ndb.port\n"


def test_cli_dump_json(conf, capsys):
    assert main(["dump", str(conf), "--format", "json"]) == 0
    assert '"db.port": "5432"' in capsys.readouterr().out


def test_cli_reports_bad_file(tmp_path, capsys):
    assert main(["dump", str(tmp_path / "nope.conf")]) == 2
    assert capsys.readouterr().err.startswith("tinyconf: ")
