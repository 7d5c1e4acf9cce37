import gzip

import numpy as np
import pytest

from seqrec.data.readers import DataFormatError, detect_format, read_buys, read_clicks

RAW = (
    "1,2014-04-07T10:51:09.277Z,214536502,0\n"
    "1,2014-04-07T10:54:09.000Z,214536500,S\n"
    "2,2014-04-07T11:00:00.500Z,214536502,2053883124\n"
)


def write(tmp_path, text, name="clicks.dat"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_raw_clicks_are_parsed_with_types(tmp_path):
    clicks = read_clicks(write(tmp_path, RAW))
    assert clicks.session.tolist() == [1, 1, 2]
    assert clicks.raw_items.tolist() == [214536502, 214536500, 214536502]
    assert clicks.item_ids.tolist() == [214536500, 214536502]  # codes index the sorted distinct ids
    assert clicks.time[0] == pytest.approx(1396867869.277)
    assert clicks.time[2] - clicks.time[1] == pytest.approx(351.5)
    assert [clicks.categories[c] for c in clicks.category] == ["0", "S", "2053883124"]


def test_prepared_format_and_gzip(tmp_path):
    path = tmp_path / "prepared.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("SessionId\tItemId\tTime\n5\t10\t1396437466.94\n5\t11\t1396437470.5\n")
    assert detect_format(path) == "prepared"
    clicks = read_clicks(path)
    assert clicks.session.tolist() == [5, 5]
    assert clicks.raw_items.tolist() == [10, 11]
    np.testing.assert_allclose(clicks.time, [1396437466.94, 1396437470.5])
    assert clicks.category is None


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (RAW + "3,2014-04-07T11:00:00.500Z,214536502\n", 4, "expected 4 columns, got 3"),
        (RAW.replace("2014-04-07T10:54:09.000Z", "yesterday"), 2, "ISO-8601"),
        (RAW.replace("214536500", "12ab"), 2, "integer ItemID"),
        ("x" + RAW, 1, "integer SessionID"),
        ("SessionID,Timestamp,ItemID,Category\n" + RAW, 1, "a header line?"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as err:
        read_clicks(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:")
    assert expected in message
    assert "\n" not in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        read_clicks(tmp_path / "nope.dat")
    with pytest.raises(DataFormatError, match=r":1: empty file"):
        read_clicks(write(tmp_path, ""))


def test_prepared_header_must_name_columns(tmp_path):
    path = write(tmp_path, "Session\tItem\tTime\n1\t2\t3.0\n", "p.tsv")
    expected = r":1: expected a header with columns 'SessionId\\tItemId\\tTime'.*missing \['SessionId', 'ItemId'\]"
    with pytest.raises(DataFormatError, match=expected):
        read_clicks(path)


def test_skip_mode_drops_and_counts_bad_lines(tmp_path):
    text = RAW + "3,2014-04-07T11:00:00.500Z\n" + "4,not-a-time,5,0\n" + "5,2014-04-07T12:00:00.000Z,7,0\n"
    clicks = read_clicks(write(tmp_path, text), on_bad_lines="skip")
    assert clicks.skipped_lines == 2
    assert clicks.session.tolist() == [1, 1, 2, 5]
    assert clicks.time[-1] == pytest.approx(1396872000.0)


def test_buys(tmp_path):
    path = write(tmp_path, "1,2014-04-07T10:51:09.277Z,214536502,1200,2\n", "buys.dat")
    buys = read_buys(path)
    assert buys.price.tolist() == [1200] and buys.quantity.tolist() == [2]
    with pytest.raises(DataFormatError, match=r"buys.dat:1: expected 5 columns, got 4"):
        read_buys(write(tmp_path, RAW.splitlines()[0] + "\n", "buys.dat"))


def test_concat_recodes_items_sessions_and_categories(tmp_path):
    from seqrec.data.readers import concat_clicks

    a = read_clicks(write(tmp_path, RAW, "a.dat"))
    b = read_clicks(write(tmp_path, "9,2014-04-08T10:00:00.000Z,7,S\n9,2014-04-08T10:01:00.000Z,214536502,3\n",
                          "b.dat"))
    both = concat_clicks([a, b])
    assert both.raw_items.tolist() == [214536502, 214536500, 214536502, 7, 214536502]
    assert both.raw_sessions.tolist() == [1, 1, 2, 9, 9]
    assert [both.categories[c] for c in both.category] == ["0", "S", "2053883124", "S", "3"]
