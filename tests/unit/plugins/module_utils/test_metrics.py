# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_metrics: parsing, merging and rendering of a Prometheus textfile, and the checks of what is given.

Every text this module renders is also read back with the reference parser (prometheus_client's), so
a rendering Prometheus would not read, or read differently, fails here."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.runbook.stack.plugins.module_utils._metrics import (
    MetricsError,
    locked,
    merge,
    parse,
    read_text,
    render,
    specs,
    to_number,
)

FOREIGN = """\
# written by another job
# HELP node_disk_spare_bytes Spare bytes.
# TYPE node_disk_spare_bytes gauge
node_disk_spare_bytes{disk="sda"} 1.5e+09
node_disk_spare_bytes{disk="sdb"} 2e9
# HELP job_latency_seconds Latency.
# TYPE job_latency_seconds histogram
job_latency_seconds_bucket{le="0.5"} 3
job_latency_seconds_bucket{le="+Inf"} 4
job_latency_seconds_sum 1.25
job_latency_seconds_count 4
# HELP weird_labels Label values with escapes.
# TYPE weird_labels gauge
weird_labels{path="C:\\\\temp",quote="say \\"hi\\"",nl="a\\nb"} 1
"""


def prom(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``text`` as the reference parser reads it: {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def metric(name, *samples, **extra):
    return {"name": name, "samples": [{"labels": labels, "value": value} for labels, value in samples], **extra}


def apply(text: str, *metrics) -> tuple[str, object]:
    tf = parse(text, "/m/test.prom")
    changes = merge(tf, specs(list(metrics)))
    return render(tf), changes


def rendered(text: str, *metrics) -> str:
    return apply(text, *metrics)[0]


# ---------------------------------------------------------------- rendering, read back by Prometheus' parser
def test_new_file_has_help_type_and_samples_prometheus_reads():
    text, changes = apply(
        "",
        metric(
            "runbook_backup_last_run_success",
            ({"kind": "postgresql", "source": "shop"}, 1),
            ({"source": "127.0.0.1:6379", "kind": "redis"}, 0),
            help="Whether the last run wrote the set.",
        ),
        metric("runbook_backup_size_bytes", ({"kind": "postgresql", "source": "shop"}, 52428800)),
    )
    assert text == (
        "# HELP runbook_backup_last_run_success Whether the last run wrote the set.\n"
        "# TYPE runbook_backup_last_run_success gauge\n"
        'runbook_backup_last_run_success{kind="postgresql",source="shop"} 1\n'
        'runbook_backup_last_run_success{kind="redis",source="127.0.0.1:6379"} 0\n'
        "# TYPE runbook_backup_size_bytes gauge\n"
        'runbook_backup_size_bytes{kind="postgresql",source="shop"} 52428800\n'
    )
    assert prom(text) == {
        ("runbook_backup_last_run_success", (("kind", "postgresql"), ("source", "shop"))): 1.0,
        ("runbook_backup_last_run_success", (("kind", "redis"), ("source", "127.0.0.1:6379"))): 0.0,
        ("runbook_backup_size_bytes", (("kind", "postgresql"), ("source", "shop"))): 52428800.0,
    }
    assert len(changes.added) == 3 and not changes.updated and not changes.removed


def test_label_values_and_help_are_escaped_and_read_back_exactly():
    nasty = 'back\\slash "quoted"\nnewline'
    text = rendered("", metric("m", ({"v": nasty}, 2), help='help with \\ and\nnewline "quotes"'))
    assert 'm{v="back\\\\slash \\"quoted\\"\\nnewline"} 2' in text
    assert '# HELP m help with \\\\ and\\nnewline "quotes"\n' in text
    assert prom(text) == {("m", (("v", nasty),)): 2.0}
    families = list(text_string_to_metric_families(text))
    assert families[0].documentation == 'help with \\ and\nnewline "quotes"'
    # and our own parser reads it back to the same sample
    tf = parse(text, "x.prom")
    assert [s.labels for s in tf.families["m"].samples.values()] == [{"v": nasty}]
    assert tf.families["m"].help == 'help with \\ and\nnewline "quotes"'


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        (1, "1", 1.0),
        (True, "1", 1.0),
        (False, "0", 0.0),
        (0.25, "0.25", 0.25),
        (1763000000.123, "1763000000.123", 1763000000.123),
        (3.0, "3", 3.0),
        ("42", "42", 42.0),
        (" 1.5 ", "1.5", 1.5),
        ("1e3", "1000", 1000.0),
        ("NaN", "NaN", math.nan),
        ("+Inf", "+Inf", math.inf),
        ("-inf", "-Inf", -math.inf),
        (2**62, str(2**62), float(2**62)),
    ],
)
def test_values_are_written_as_prometheus_reads_them(value, text, number):
    got_number, got_text = to_number(value, "metric m")
    assert got_text == text
    assert got_number == number or (math.isnan(number) and math.isnan(got_number))
    read = next(iter(prom(f"m {got_text}\n").values()))
    assert read == number or (math.isnan(number) and math.isnan(read))


@pytest.mark.parametrize("value", [None, "twelve", [1], {"a": 1}, ""])
def test_a_value_that_is_no_number_is_refused_naming_the_sample(value):
    with pytest.raises(MetricsError, match=r'metric m\{a="b"\}: value'):
        specs([metric("m", ({"a": "b"}, value))])


# ---------------------------------------------------------------- merging
def test_merge_replaces_the_same_series_and_keeps_every_other_sample():
    before = rendered(
        "",
        metric("last_success", ({"set": "a"}, 100), ({"set": "b"}, 100)),
        metric("last_run_success", ({"set": "a"}, 1), ({"set": "b"}, 1)),
    )
    after, changes = apply(before, metric("last_run_success", ({"set": "b"}, 0)))
    assert prom(after) == {
        ("last_success", (("set", "a"),)): 100.0,
        ("last_success", (("set", "b"),)): 100.0,  # the failed run leaves the last success as it was
        ("last_run_success", (("set", "a"),)): 1.0,
        ("last_run_success", (("set", "b"),)): 0.0,
    }
    assert changes.updated == ['last_run_success{set="b"}'] and not changes.added and not changes.removed
    # the sample is replaced in place: the file keeps its order
    assert after.index('last_run_success{set="a"}') < after.index('last_run_success{set="b"}')


def test_the_same_values_again_change_nothing():
    first = rendered(FOREIGN, metric("m", ({"a": "1"}, 5), help="h"))
    again, changes = apply(first, metric("m", ({"a": "1"}, 5.0), help="h"))
    assert again == first
    assert not (changes.added or changes.updated or changes.removed)


def test_label_order_and_empty_labels_do_not_make_another_series():
    first = rendered("", metric("m", ({"b": "2", "a": "1", "tier": ""}, 5)))
    assert first == '# TYPE m gauge\nm{a="1",b="2"} 5\n'
    again, changes = apply(first, metric("m", ({"a": "1", "b": "2"}, 6)))
    assert changes.updated == ['m{a="1",b="2"}']
    assert prom(again) == {("m", (("a", "1"), ("b", "2"))): 6.0}


def test_a_foreign_file_is_kept_whole_with_its_comments_histograms_and_escapes():
    after = rendered(FOREIGN, metric("runbook_health_up", ({"component": "db"}, 1)))
    expected = prom(FOREIGN)
    expected[("runbook_health_up", (("component", "db"),))] = 1.0
    assert prom(after) == expected
    assert after.startswith("# written by another job\n# HELP node_disk_spare_bytes Spare bytes.\n")
    assert 'node_disk_spare_bytes{disk="sda"} 1.5e+09\n' in after  # untouched values keep their text
    assert after.endswith('# TYPE runbook_health_up gauge\nrunbook_health_up{component="db"} 1\n')


def test_replace_drops_the_other_samples_of_the_metric_only():
    before = rendered("", metric("up", ({"c": "a"}, 1), ({"c": "gone"}, 1)), metric("other", ({"c": "gone"}, 7)))
    after, changes = apply(before, metric("up", ({"c": "a"}, 1), replace=True))
    assert prom(after) == {("up", (("c", "a"),)): 1.0, ("other", (("c", "gone"),)): 7.0}
    assert changes.removed == ['up{c="gone"}']


def test_replace_with_no_samples_removes_the_metric_and_its_help():
    before = rendered("", metric("up", ({"c": "a"}, 1), help="Up."), metric("keep", ({}, 1)))
    after, changes = apply(before, {"name": "up", "samples": [], "replace": True})
    assert after == "# TYPE keep gauge\nkeep 1\n"
    assert changes.removed == ['up{c="a"}']


def test_state_absent_removes_one_sample():
    before = rendered("", metric("up", ({"c": "a"}, 1), ({"c": "b"}, 1)))
    after, changes = apply(before, {"name": "up", "samples": [{"labels": {"c": "b"}, "state": "absent"}]})
    assert prom(after) == {("up", (("c", "a"),)): 1.0}
    assert changes.removed == ['up{c="b"}']
    unchanged, changes = apply(after, {"name": "up", "samples": [{"labels": {"c": "b"}, "state": "absent"}]})
    assert unchanged == after and not changes.removed


def test_help_and_type_given_replace_the_files_help_and_type_is_kept_without():
    before = rendered("", metric("m", ({}, 1), help="old", type="counter"))
    kept = rendered(before, metric("m", ({}, 2), type="counter"))
    assert kept == "# HELP m old\n# TYPE m counter\nm 2\n"
    new = rendered(kept, metric("m", ({}, 2), help="new"))
    assert new == "# HELP m new\n# TYPE m gauge\nm 2\n"


def test_a_histogram_of_the_file_is_not_overwritten():
    with pytest.raises(MetricsError, match="metric job_latency_seconds is a histogram in the file"):
        apply(FOREIGN, metric("job_latency_seconds", ({}, 1)))
    with pytest.raises(MetricsError, match="job_latency_seconds_count: the file has it as part of the histogram"):
        apply(FOREIGN, metric("job_latency_seconds_count", ({}, 1)))


# ---------------------------------------------------------------- validation of what is given
@pytest.mark.parametrize("name", ["1starts_with_digit", "has-dash", "has space", "", "ünïcode"])
def test_an_invalid_metric_name_is_refused_naming_it(name):
    with pytest.raises(MetricsError, match="is not a valid Prometheus metric name") as err:
        specs([metric(name, ({}, 1))])
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("label", ["has-dash", "1digit", "a:b", "", "__reserved"])
def test_an_invalid_label_name_is_refused_naming_metric_and_label(label):
    with pytest.raises(MetricsError) as err:
        specs([metric("runbook_health_up", ({label: "x"}, 1))])
    assert "metric runbook_health_up" in str(err.value) and repr(label) in str(err.value)


@pytest.mark.parametrize("value", [None, True, ["x"], {"a": "b"}])
def test_a_label_value_that_is_no_string_is_refused(value):
    with pytest.raises(MetricsError, match="label 'c' must have a string value"):
        specs([metric("m", ({"c": value}, 1))])


def test_numbers_as_label_values_are_written_as_text():
    text = rendered("", metric("m", ({"port": 6379, "ratio": 0.5}, 1)))
    assert prom(text) == {("m", (("port", "6379"), ("ratio", "0.5"))): 1.0}


def test_the_same_series_or_metric_twice_is_refused():
    with pytest.raises(MetricsError, match=r'metric m\{a="1"\} is given twice \(samples 1 and 2\)'):
        specs([metric("m", ({"a": "1"}, 1), ({"a": "1", "b": ""}, 2))])
    with pytest.raises(MetricsError, match="metric m is given more than once"):
        specs([metric("m", ({"a": "1"}, 1)), metric("m", ({"a": "2"}, 1))])


def test_a_negative_counter_and_an_unknown_type_are_refused():
    with pytest.raises(MetricsError, match="a counter cannot be negative, got -1"):
        specs([metric("c_total", ({}, -1), type="counter")])
    with pytest.raises(MetricsError, match="type must be one of gauge, counter, got 'histogram'"):
        specs([metric("h", ({}, 1), type="histogram")])


# ---------------------------------------------------------------- parsing faults name the path and the line
@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("ok 1\nbroken line here\n", 2, "the value of broken is not a number: 'line'"),
        ("ok 1\nm 1 2 3\n", 2, "unexpected text after the value of m: '2 3'"),
        ('ok 1\n{a="b"} 1\n', 2, "not a sample, HELP, TYPE or comment line"),
        ('m{a="b} 1\n', 1, "has no closing quote"),
        ('m{a="b\\x"} 1\n', 1, "invalid escape"),
        ("m{a=b} 1\n", 1, "must be in double quotes"),
        ('m{a="1",a="2"} 1\n', 1, "label a appears twice"),
        ("m one\n", 1, "is not a number"),
        ("m\n", 1, "has no value"),
        ("m 1 1700000000000\n", 1, "has a timestamp"),
        ('m{a="1"} 1\nx 2\nm{a="1"} 3\n', 3, 'sample m{a="1"} appears twice (first on line 1)'),
        ("# TYPE m gauge\n# TYPE m counter\nm 1\n", 2, "second # TYPE line for m"),
        ("# HELP m a\n# HELP m b\n", 2, "second # HELP line for m"),
        ("# TYPE m gauges\n", 1, "unknown type 'gauges'"),
        ("m 1\n# TYPE m gauge\n", 2, "comes after samples of m"),
        ("# HELP 9bad x\n", 1, "names no valid metric"),
    ],
)
def test_a_file_that_cannot_be_parsed_fails_naming_path_and_line(text, line, why):
    with pytest.raises(MetricsError) as err:
        parse(text, "/m/runbook_backup.prom")
    assert f"/m/runbook_backup.prom line {line}: " in str(err.value)
    assert why in str(err.value)


def test_lenient_where_prometheus_is_comments_blank_lines_spaces_and_trailing_comma():
    tf = parse('\n  # just a note\nm { a = "1" , } 2\r\n\n#TYPE n counter\nn 3\n', "x.prom")
    assert tf.families["m"].comments == ["# just a note"]
    assert [(s.labels, s.value) for s in tf.families["m"].samples.values()] == [({"a": "1"}, 2.0)]
    assert tf.families["n"].type == "counter"
    # (prometheus_client names the sample of a counter n "n_total")
    assert prom(render(tf)) == {("m", (("a", "1"),)): 2.0, ("n_total", ()): 3.0}


def test_read_text_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "bin.prom"
    path.write_bytes(b"ok 1\nbad\xff 2\n")
    with pytest.raises(MetricsError, match=r"bin.prom line 2: not UTF-8 text"):
        read_text(str(path))
    assert read_text(str(tmp_path / "missing.prom")) == (None, None)


# ---------------------------------------------------------------- one writer at a time
def test_locked_makes_a_second_writer_wait_then_time_out(tmp_path):
    entered = threading.Event()
    release = threading.Event()

    def holder():
        with locked(str(tmp_path)):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(5)
    try:
        started = time.monotonic()
        with pytest.raises(MetricsError, match="another writer held the lock"), locked(str(tmp_path), timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
    finally:
        release.set()
        thread.join()
    with locked(str(tmp_path), timeout=1):  # free again
        pass
    assert os.listdir(tmp_path) == []  # no lock file left behind


def test_locked_on_a_directory_that_cannot_be_opened_fails_clearly(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(MetricsError, match=r"cannot lock .*missing to write in it: No such file"), locked(missing):
        pass
