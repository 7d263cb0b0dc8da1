"""The DR report: RTO/RPO and verdicts, input errors, the three renderings, the files, the module."""

from __future__ import annotations

import json
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.runbook.stack.plugins.module_utils import _dr_report as dr
from ansible_collections.runbook.stack.plugins.modules import dr_report

HOSTILE = "<script>alert('x')</script>"
SVG_NS = "{http://www.w3.org/2000/svg}"


def phases():
    # deliberately not in time order
    return [
        {"name": "restore PostgreSQL", "started_at": "2026-03-01T02:05:00Z", "ended_at": "2026-03-01T02:35:00Z"},
        {"name": "maintenance on", "started_at": "2026-03-01T02:02:00Z", "ended_at": "2026-03-01T02:05:00Z"},
        {
            "name": "start application",
            "started_at": "2026-03-01T03:35:00+01:00",  # 02:35Z
            "ended_at": "2026-03-01T02:50:00Z",
            "status": "skipped",
        },
    ]


def facts(**over):
    args = dict(
        disaster_declared_at="2026-03-01T02:00:00Z",
        healthy_at="2026-03-01T02:50:00Z",
        recovery_point="2026-03-01T01:52:30Z",
        phases=phases(),
        verifications=[
            {"name": "orders rows", "component": "postgresql", "passed": True, "expected": 184223, "actual": 184223},
            {"name": "health", "component": "app", "passed": True, "expected": {"status": 200}},
        ],
        lost_writes=[
            {"component": "postgresql", "description": "orders after the recovery point", "count": 12},
            {"component": "redis", "description": "sessions", "count": 30, "detail": "users log in again"},
        ],
        facts={"backup_id": "20260301T015230Z", "hosts": ["db1", "cache1"]},
    )
    args.update(over)
    return args


def svg_of(html_text: str) -> ET.Element:
    start = html_text.index("<svg")
    end = html_text.index("</svg>") + len("</svg>")
    return ET.fromstring(html_text[start:end])


# ------------------------------------------------------------------------------------------------
# timestamps
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T02:00:00Z", "2026-03-01T02:00:00Z"),
        ("2026-03-01t02:00:00z", "2026-03-01T02:00:00Z"),
        ("2026-03-01T03:30:00+01:30", "2026-03-01T02:00:00Z"),
        ("2026-03-01T00:00:00-0200", "2026-03-01T02:00:00Z"),
        ("2026-03-01 02:00:00.25+00:00", "2026-03-01T02:00:00.250Z"),
        ("2026-03-01T02:00:00.123456789Z", "2026-03-01T02:00:00.123456Z"),
        ("2026-03-01T02:00Z", "2026-03-01T02:00:00Z"),
    ],
)
def test_timestamps_with_z_or_offset_come_out_in_utc(text, expected):
    assert dr.format_timestamp(dr.parse_timestamp(text, "healthy_at")) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x", "unparseable timestamp 'x' in disaster_declared_at"),
        ("2026-13-01T00:00:00Z", "unparseable timestamp '2026-13-01T00:00:00Z' in disaster_declared_at: month"),
        ("2026-03-01T02:00:00", "timestamp '2026-03-01T02:00:00' in disaster_declared_at has no UTC offset"),
        (1772330400, "unparseable timestamp 1772330400 in disaster_declared_at"),
        (None, "unparseable timestamp None in disaster_declared_at"),
    ],
)
def test_bad_timestamps_name_the_option(value, message):
    with pytest.raises(dr.DrReportError) as err:
        dr.parse_timestamp(value, "disaster_declared_at")
    assert str(err.value).startswith(message)


# ------------------------------------------------------------------------------------------------
# RTO, RPO and verdicts
# ------------------------------------------------------------------------------------------------


def test_rto_and_rpo_measured_and_met_with_default_targets():
    report = dr.build_report(**facts())
    assert report["rto"] == {"seconds": 3000.0, "target_s": 3600.0, "met": True}
    assert report["rpo"] == {"seconds": 450.0, "target_s": 900.0, "met": True}
    assert report["overall"] == {
        "passed": True,
        "rto_met": True,
        "rpo_met": True,
        "verified": True,
        "failed_phases": [],
        "reasons": [],
    }
    assert report["generated_at"] == report["healthy_at"] == "2026-03-01T02:50:00Z"


def test_targets_decide_the_verdicts_and_equal_is_met():
    report = dr.build_report(**facts(targets={"rto_s": 3000, "rpo_s": 449.999}))
    assert report["rto"]["met"] is True
    assert report["rpo"] == {"seconds": 450.0, "target_s": 449.999, "met": False}
    assert report["overall"]["passed"] is False
    assert report["overall"]["reasons"] == ["RPO 7m 30s exceeds the target 7m 30s"]

    report = dr.build_report(**facts(targets={"rto_s": 2999.5}))
    assert report["rto"]["met"] is False and report["rpo"]["met"] is True
    assert report["overall"]["passed"] is False


def test_seconds_rounded_to_milliseconds():
    report = dr.build_report(
        **facts(healthy_at="2026-03-01T02:00:01.23456Z", recovery_point="2026-03-01T01:59:59.9994Z", phases=phases())
    )
    assert report["rto"]["seconds"] == 1.235
    assert report["rpo"]["seconds"] == 0.001


@pytest.mark.parametrize("bad", [0, -5, "soon", float("nan"), True])
def test_targets_must_be_positive_numbers(bad):
    with pytest.raises(dr.DrReportError, match=r"targets\.rto_s must be a positive number of seconds"):
        dr.build_report(**facts(targets={"rto_s": bad}))


def test_negative_rpo_names_both_options():
    with pytest.raises(dr.DrReportError) as err:
        dr.build_report(**facts(recovery_point="2026-03-01T02:00:01Z"))
    msg = str(err.value)
    assert "recovery_point" in msg and "disaster_declared_at" in msg and "negative" in msg


def test_last_write_at_measures_the_rpo_from_the_last_write():
    # recovery point 01:52:30, declared 02:00:00, the load's last acknowledged write at 01:52:36.5
    report = dr.build_report(**facts(last_write_at="2026-03-01T01:52:36.5Z"))
    assert report["rpo"] == {"seconds": 6.5, "target_s": 900.0, "met": True}
    assert report["last_write_at"] == "2026-03-01T01:52:36.500Z"
    text = dr.render_markdown(report)
    assert "| RPO (last write to recovery point) | 6.5s (6.5 s) |" in text, text
    assert "- Last write before the loss: 2026-03-01T01:52:36.500Z" in text
    assert dr.build_report(**facts())["last_write_at"] is None
    with pytest.raises(dr.DrReportError, match=r"recovery_point .* is after last_write_at"):
        dr.build_report(**facts(last_write_at="2026-03-01T01:50:00Z"))


def test_healthy_before_declared_is_refused():
    with pytest.raises(dr.DrReportError, match=r"healthy_at \(2026-03-01T01:59:00Z\) is before disaster_declared_at"):
        dr.build_report(**facts(healthy_at="2026-03-01T01:59:00Z"))


def test_generated_at_option_wins_over_healthy_at():
    report = dr.build_report(**facts(generated_at="2026-03-02T09:00:00+01:00"))
    assert report["generated_at"] == "2026-03-02T08:00:00Z"


# ------------------------------------------------------------------------------------------------
# phases, verifications, lost writes
# ------------------------------------------------------------------------------------------------


def test_phases_sorted_with_offsets_and_durations():
    report = dr.build_report(**facts())
    got = [(p["name"], p["offset_s"], p["duration_s"], p["status"]) for p in report["phases"]]
    assert got == [
        ("maintenance on", 0.0, 180.0, "ok"),
        ("restore PostgreSQL", 180.0, 1800.0, "ok"),
        ("start application", 1980.0, 900.0, "skipped"),
    ]
    assert report["phases"][2]["started_at"] == "2026-03-01T02:35:00Z"
    assert report["phases"][0]["detail"] is None


def test_phase_ending_before_it_starts_is_named_by_its_input_position():
    bad = phases()
    bad[2]["ended_at"] = "2026-03-01T02:34:59Z"
    with pytest.raises(dr.DrReportError, match=r"^phases\[2\]\.ended_at is before started_at"):
        dr.build_report(**facts(phases=bad))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"started_at": "yesterday"}, r"unparseable timestamp 'yesterday' in phases\[1\]\.started_at"),
        ({"status": "done"}, r"phases\[1\]\.status must be one of ok, failed, skipped"),
        ({"name": " "}, r"phases\[1\]\.name must be a non-empty string"),
    ],
)
def test_bad_phase_fields(change, message):
    bad = phases()
    bad[1].update(change)
    with pytest.raises(dr.DrReportError, match=message):
        dr.build_report(**facts(phases=bad))


def test_no_phase_is_refused():
    with pytest.raises(dr.DrReportError, match="phases must list at least one phase"):
        dr.build_report(**facts(phases=[]))


def test_failed_phase_fails_the_drill_skipped_does_not():
    report = dr.build_report(**facts())
    assert report["overall"]["passed"] is True  # one phase is skipped
    failing = phases()
    failing[0]["status"] = "failed"
    report = dr.build_report(**facts(phases=failing))
    assert report["overall"]["passed"] is False
    assert report["overall"]["failed_phases"] == ["restore PostgreSQL"]
    assert report["overall"]["reasons"] == ["phase 'restore PostgreSQL' failed"]


def test_one_failed_verification_fails_the_drill():
    checks = facts()["verifications"]
    checks[1]["passed"] = False
    report = dr.build_report(**facts(verifications=checks))
    assert report["verifications_passed"] is False
    assert report["verification_counts"] == {"total": 2, "passed": 1, "failed": 1}
    assert report["overall"]["passed"] is False
    assert report["overall"]["reasons"] == ["1 of 2 verifications failed"]


def test_nothing_verified_is_not_a_pass_and_the_report_says_so():
    report = dr.build_report(**facts(verifications=[]))
    assert report["verifications_passed"] is False and report["overall"]["verified"] is False
    assert report["overall"]["passed"] is False
    assert report["overall"]["reasons"] == ["nothing was verified"]
    text = dr.render_markdown(report)
    assert "| Verification | 0/0 passed | all pass (at least one) | **FAIL** |" in text
    assert dr.NOTHING_VERIFIED in text
    assert dr.esc(dr.NOTHING_VERIFIED) in dr.render_html(report)


def test_verification_passed_must_be_a_bool():
    with pytest.raises(dr.DrReportError, match=r"verifications\[0\]\.passed must be true or false, got 'yes'"):
        dr.build_report(**facts(verifications=[{"name": "n", "component": "c", "passed": "yes"}]))


def test_lost_writes_totalled():
    report = dr.build_report(**facts())
    assert report["lost_writes_total"] == 42
    assert [loss["count"] for loss in report["lost_writes"]] == [12, 30]
    assert dr.build_report(**facts(lost_writes=[]))["lost_writes_total"] == 0


@pytest.mark.parametrize("count", [-1, 1.5, True, None])
def test_lost_writes_count_must_be_a_whole_number(count):
    with pytest.raises(dr.DrReportError, match=r"lost_writes\[0\]\.count must be a whole number >= 0"):
        dr.build_report(**facts(lost_writes=[{"component": "c", "description": "d", "count": count}]))


def test_facts_are_copied_into_the_json():
    report = dr.build_report(**facts())
    assert json.loads(dr.render_json(report))["facts"] == {"backup_id": "20260301T015230Z", "hosts": ["db1", "cache1"]}


@pytest.mark.parametrize("name", ["dr-report", "drill_2026.03.01"])
def test_plain_names_accepted(name):
    assert dr.check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "", "dr report", "x\n"])
def test_names_that_are_not_plain_file_names_refused(name):
    with pytest.raises(dr.DrReportError, match="is not a plain file name"):
        dr.check_name(name)


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------


def test_markdown_summary_and_phase_table():
    text = dr.render_markdown(dr.build_report(**facts(title="Drill March")))
    assert text.startswith("# Drill March\n\n**Overall: PASS**\n")
    assert "| RTO (declared to healthy) | 50m 00s (3000 s) | 1h 00m 00s (3600 s) | **met** |" in text
    assert "| RPO (recovery point age) | 7m 30s (450 s) | 15m 00s (900 s) | **met** |" in text
    assert "| Verification | 2/2 passed | all pass (at least one) | **PASS** |" in text
    assert "| Overall |  |  | **PASS** |" in text
    phase_section = text.split("## Phases\n", 1)[1].split("## ", 1)[0]
    rows = [line for line in phase_section.splitlines() if re.match(r"^\| \d", line)]
    assert rows == [
        "| 1 | maintenance on | +0s | 3m 00s | ok |  |",
        "| 2 | restore PostgreSQL | +3m 00s | 30m 00s | ok |  |",
        "| 3 | start application | +33m 00s | 15m 00s | skipped |  |",
    ]
    assert "| postgresql | orders rows | 184223 | 184223 | pass |  |" in text
    assert '| app | health | {"status": 200} |  | pass |  |' in text
    assert "Total lost: 42." in text and "| redis | sessions | 30 | users log in again |" in text
    assert '| hosts | \\["db1", "cache1"\\] |' in text  # no link syntax


def test_markdown_failure_verdicts():
    failing = phases()
    failing[1]["status"] = "failed"
    text = dr.render_markdown(dr.build_report(**facts(phases=failing, targets={"rto_s": 60}, lost_writes=[])))
    assert "**Overall: FAIL** - RTO 50m 00s exceeds the target 1m 00s; phase 'maintenance on' failed" in text
    assert "| 1m 00s (60 s) | **MISSED** |" in text
    assert "| 1 | maintenance on | +0s | 3m 00s | **failed** |  |" in text
    assert dr.NOTHING_LOST in text


def test_markdown_escapes_markup_and_table_breaks():
    bad = phases()
    bad[0]["name"] = HOSTILE
    bad[0]["detail"] = "a | b\n| c"
    text = dr.render_markdown(dr.build_report(**facts(phases=bad, title="T\n# injected")))
    assert "<script>" not in text
    assert "\\<script\\>" in text
    assert text.startswith("# T # injected\n")  # one heading line, not two
    row = next(line for line in text.splitlines() if "script" in line and line.startswith("| 2 |"))
    assert row.endswith("| a \\| b \\| c |")


# ------------------------------------------------------------------------------------------------
# HTML and the SVG timeline
# ------------------------------------------------------------------------------------------------


def test_html_escapes_every_input_string():
    bad = phases()
    bad[0]["name"] = HOSTILE
    bad[1]["detail"] = '"><img src=x onerror=alert(1)>'
    report = dr.build_report(
        **facts(
            phases=bad,
            title=HOSTILE,
            verifications=[{"name": HOSTILE, "component": "<b>", "passed": True, "actual": {"k": "<i>"}}],
            lost_writes=[{"component": "<u>", "description": HOSTILE, "count": 1}],
            facts={"<k>": "<v>"},
        )
    )
    text = dr.render_html(report)
    assert "<script" not in text.lower()
    assert "<img" not in text and "<b>" not in text and "<i>" not in text and "<u>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<title>&lt;script&gt;" in text  # the page title too
    svg_of(text)  # still well-formed XML with the hostile label inside


def test_html_is_self_contained():
    text = dr.render_html(dr.build_report(**facts()))
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert "<script" not in text and " src=" not in text and "href=" not in text and "@import" not in text
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only


def test_svg_has_one_bar_per_phase_proportional_to_time():
    report = dr.build_report(**facts())
    svg = svg_of(dr.render_html(report))
    assert svg.get("width") == "900"
    bars = [rect for rect in svg.iter(f"{SVG_NS}rect") if "bar" in rect.get("class", "").split()]
    assert len(bars) == len(report["phases"]) == 3
    widths = [float(rect.get("width")) for rect in bars]
    durations = [phase["duration_s"] for phase in report["phases"]]
    assert widths[1] == pytest.approx(widths[0] * 10, rel=1e-3)  # 30 min vs 3 min
    assert widths[2] == pytest.approx(widths[0] * 5, rel=1e-3)  # 15 min vs 3 min
    scale = widths[0] / durations[0]
    # the axis starts at the declaration, 2 minutes before the first phase
    xs = [float(rect.get("x")) for rect in bars]
    assert xs[1] - xs[0] == pytest.approx(180 * scale, abs=0.02)
    assert xs[0] - dr.PLOT_X == pytest.approx(120 * scale, abs=0.02)
    assert scale == pytest.approx(dr.PLOT_W / (50 * 60), rel=1e-3)  # declared 02:00 to healthy 02:50
    assert [rect.get("fill") for rect in bars] == [dr.COLOURS["ok"], dr.COLOURS["ok"], dr.COLOURS["skipped"]]
    assert [rect.find(f"{SVG_NS}title").text for rect in bars][1] == "restore PostgreSQL: 30m 00s (ok)"
    labels = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert "maintenance on" in labels and "30m 00s" in labels


def test_svg_marks_declaration_and_health():
    report = dr.build_report(**facts())
    svg = svg_of(dr.render_html(report))
    markers = {
        line.get("class").split()[1]: float(line.get("x1"))
        for line in svg.iter(f"{SVG_NS}line")
        if "marker" in line.get("class", "").split()
    }
    assert markers == {
        "marker-declared": pytest.approx(dr.PLOT_X),
        "marker-healthy": pytest.approx(dr.PLOT_X + dr.PLOT_W),
    }
    labels = [t.text for t in svg.iter(f"{SVG_NS}text") if t.get("class") == "marker-label"]
    assert labels == ["disaster declared", "healthy"]


def test_svg_failed_phase_is_red_and_zero_length_phase_does_not_break_the_scale():
    one = [{"name": "instant", "started_at": "2026-03-01T02:00:00Z", "ended_at": "2026-03-01T02:00:00Z"}]
    report = dr.build_report(
        **facts(phases=one, disaster_declared_at="2026-03-01T02:00:00Z", healthy_at="2026-03-01T02:00:00Z")
    )
    bars = [r for r in svg_of(dr.render_html(report)).iter(f"{SVG_NS}rect") if "bar" in r.get("class", "")]
    assert len(bars) == 1 and float(bars[0].get("width")) == 0
    failing = phases()
    failing[2]["status"] = "failed"
    svg = svg_of(dr.render_html(dr.build_report(**facts(phases=failing))))
    fills = [r.get("fill") for r in svg.iter(f"{SVG_NS}rect") if "bar" in r.get("class", "")]
    assert fills[2] == dr.COLOURS["failed"]


def test_html_shows_the_same_content_as_the_markdown():
    text = dr.render_html(dr.build_report(**facts()))
    for needle in ("50m 00s (3000 s)", "7m 30s (450 s)", "2/2 passed", "Total lost: 42.", "20260301T015230Z"):
        assert needle in text
    assert '<span class="badge good">PASS</span>' in text


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


def test_write_report_creates_dest_writes_three_files_then_is_idempotent(tmp_path):
    dest = tmp_path / "reports" / "2026-03-01"
    report = dr.build_report(**facts())
    written, paths = dr.write_report(str(dest), "drill", report)
    assert written == ["json", "md", "html"]
    assert paths == {fmt: str(dest / f"drill.{fmt}") for fmt in ("json", "md", "html")}
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert json.loads((dest / "drill.json").read_text()) == report
    assert sorted(os.listdir(dest)) == ["drill.html", "drill.json", "drill.md"]  # no temp file left

    assert dr.write_report(str(dest), "drill", dr.build_report(**facts()))[0] == []
    (dest / "drill.md").write_text("edited by hand\n")
    assert dr.write_report(str(dest), "drill", report) == (["md"], paths)
    assert dr.write_report(str(dest), "drill", report)[0] == []


def test_write_report_check_mode_writes_nothing(tmp_path):
    dest = tmp_path / "new"
    report = dr.build_report(**facts())
    assert dr.write_report(str(dest), "drill", report, check_mode=True)[0] == ["json", "md", "html"]
    assert not dest.exists()
    dr.write_report(str(dest), "drill", report)
    changed = dr.build_report(**facts(title="Other"))
    before = (dest / "drill.json").read_bytes()
    assert dr.write_report(str(dest), "drill", changed, check_mode=True)[0] == ["json", "md", "html"]
    assert (dest / "drill.json").read_bytes() == before


def test_write_report_refuses_a_file_as_dest(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(dr.DrReportError, match="exists and is not a directory"):
        dr.write_report(str(tmp_path / "f"), "drill", dr.build_report(**facts()))


# ------------------------------------------------------------------------------------------------
# the module, end to end
# ------------------------------------------------------------------------------------------------


def run_module(monkeypatch, capsys, args):
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        dr_report.main()
    return json.loads(capsys.readouterr().out)


def test_module_writes_reports_and_reruns_unchanged(monkeypatch, capsys, tmp_path):
    args = dict(facts(), dest=str(tmp_path / "out"), name="drill", targets={"rto_s": 3600})
    predicted = run_module(monkeypatch, capsys, dict(args, _ansible_check_mode=True))
    assert predicted["changed"] is True and not (tmp_path / "out").exists()

    result = run_module(monkeypatch, capsys, args)
    assert result["changed"] is True and result["written"] == ["json", "md", "html"]
    assert result["files"]["html"] == str(tmp_path / "out" / "drill.html")
    assert (result["rto_s"], result["rpo_s"], result["passed"]) == (3000.0, 450.0, True)
    assert result["report"]["rpo"]["target_s"] == 900.0  # suboption default
    assert result["report"]["phases"][0]["status"] == "ok"
    assert json.loads((tmp_path / "out" / "drill.json").read_text()) == result["report"] == predicted["report"]

    again = run_module(monkeypatch, capsys, args)
    assert again["changed"] is False and again["written"] == []


def test_module_fails_cleanly_on_bad_input(monkeypatch, capsys, tmp_path):
    bad = phases()
    bad[2]["ended_at"] = "2026-03-01T02:00:00Z"
    result = run_module(monkeypatch, capsys, dict(facts(phases=bad), dest=str(tmp_path)))
    assert result["failed"] is True
    assert result["msg"].startswith("cannot write the DR report: phases[2].ended_at is before started_at")
    assert "Traceback" not in json.dumps(result) and "exception" not in result
    assert os.listdir(tmp_path) == []

    result = run_module(monkeypatch, capsys, dict(facts(), dest=str(tmp_path), name="../escape"))
    assert result["failed"] is True and "name '../escape' is not a plain file name" in result["msg"]
