#!/usr/bin/env python
"""Run the hardening suites and write docs/RELIABILITY.md from their JUnit XML.

    .venv/bin/python scripts/reliability_report.py            # run everything, rewrite the doc
    .venv/bin/python scripts/reliability_report.py --xml F    # rebuild the doc from an existing run

Each test may record how many cases it tried (tests/reliability.py); others count as one.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ["tests/hostile", "tests/fuzz", "tests/faults", "tests/security", "tests/test_folders_state_machine.py",
          "tests/test_folders.py", "tests/test_transfer.py", "tests/test_read_only.py", "tests/test_cli_inputs.py",
          "tests/web/test_input_limits.py", "tests/test_shutdown_and_backup.py", "tests/test_decode_boundary.py"]
# module -> (area, what was tried)
AREAS = {
    "tests.hostile.test_index": ("Hostile files: index", "the generated corpus (truncated/empty/fake/bomb/extreme/odd-mode "
                                 "images, unicode and long names, links, FIFOs, vanishing and unreadable files) through "
                                 "`memesearch index` with real OCR and MiniLM"),
    "tests.hostile.test_service": ("Hostile files: ML service", "every corpus file's bytes to /v1/ocr (real RapidOCR) and "
                                   "/v1/caption (fake model)"),
    "tests.hostile.test_upload": ("Hostile files: web upload", "every corpus file through POST /api/uploads, then "
                                  "indexed by the job worker; path-traversal and duplicate names"),
    "tests.hostile.test_search_by_image": ("Hostile files: search by image", "every corpus file's bytes as the "
                                           "picture to search by (hashes and template features on a real library)"),
    "tests.fuzz.test_image_mutations": ("Fuzz: image mutations", "seeded mutants of PNG, APNG, JPEG, GIF, WebP, BMP "
                                        "and TIFF (bit flips, byte edits, truncations, chunk/segment duplication, "
                                        "removal and lying lengths, huge metadata) through decode + hash + thumbnail "
                                        "+ the service decoder, and a subset through a real `memesearch index`"),
    "tests.hostile.test_huge_ids": ("Fuzzer findings", "pinned: ids beyond 64-bit integers, NUL in keyword queries"),
    "tests.fuzz.test_query_properties": ("Fuzz: query language", "Hypothesis: the parser and SearchEngine.search on "
                                         "arbitrary unicode (keyword, vector, hybrid) on a real store"),
    "tests.fuzz.test_export_roundtrip": ("Fuzz: export/import", "Hypothesis: generated libraries (byte-identical, "
                                         "unhashed and broken files, nested unicode names, arbitrary texts and tags) through "
                                         "export -> import (before or after indexing) -> export: the same records"),
    "tests.fuzz.test_schemathesis": ("Fuzz: OpenAPI", "schemathesis, valid and invalid requests to every operation of "
                                     "the ML service and the web JSON API (calls counted)"),
    "tests.faults.test_kill9": ("Faults: kill -9", "SIGKILL of the worker (twice) and of the ML service at seeded "
                                "random points of a 12-meme index+describe run, on SQLite and PostgreSQL"),
    "tests.faults.test_kill9_web": ("Faults: kill -9 web", "SIGKILL of `memesearch serve` (in-process worker) in the "
                                    "middle of a describe run started through the API, then a restart"),
    "tests.faults.test_scan_race": ("Faults: scan race", "two worker threads on one unscanned index run"),
    "tests.faults.test_corrupt_model": ("Faults: corrupt model", "truncated MiniLM ONNX: rebuilt from the package, "
                                        "or a clear error when it cannot be"),
    "tests.faults.test_disk_full": ("Faults: disk full", "a 2 MB tmpfs data dir filled mid-index, then space freed "
                                    "and the index rerun"),
    "tests.security.test_web_security": ("Security: web", "login + CSRF on every state-changing route (enumerated), "
                                         "path traversal and swapped links on file routes"),
    "tests.security.test_tokens_and_logs": ("Security: tokens and logs", "ML service token on every route; password "
                                            "and tokens absent from all logs"),
    "tests.security.test_login_throttle": ("Security: login throttle", "wrong passwords and API tokens per client, "
                                           "tiers, global cap, trusted-proxy clients, a parallel burst on a real server"),
    "tests.security.test_sessions": ("Security: sessions", "logout, restart with the same and a new password, "
                                     "forged cookies, what the sessions file holds"),
    "tests.security.test_csrf_and_origin": ("Security: CSRF and origin", "planted CSRF cookies, foreign Origin/Referer, "
                                            "Secure cookies on https and behind trusted proxies"),
    "tests.test_folders_state_machine": ("State machine: folders and user data", "Hypothesis: add/remove (nested "
                                         "roots, the data dir, uploads), index, upload, rename, delete, prune, tag, "
                                         "describe on a real library; no step raises, no tag or description is lost "
                                         "except by prune of a file that is gone"),
    "tests.test_folders": ("Folders as roots", "remove + add, nested folders in both orders, the data dir inside a "
                           "folder, uploads registered under it, skipped links reported"),
    "tests.test_transfer": ("Export/import", "byte-identical files with their own records, import before indexing, "
                            "files without a hash, a moved library, old export format"),
    "tests.test_read_only": ("Read-only data dir", "every read command on a read-only dir (files hashed before and "
                             "after), write commands, `serve`, a read-only bind mount"),
    "tests.test_cli_inputs": ("CLI inputs", "bounds, filter counts, arguments and --batch files that are not UTF-8, "
                              "terminal escapes in names"),
    "tests.web.test_input_limits": ("HTTP inputs", "huge offsets, 999 filters, lone surrogates in JSON and URLs, "
                                    "oversized uploads"),
    "tests.test_shutdown_and_backup": ("Shutdown and backup", "SIGTERM of serve and worker (WAL checkpointed), "
                                       "`memesearch backup` while a writer runs"),
    "tests.test_decode_boundary": ("Decode boundary", "every decoder exception type becomes the file's error; I/O "
                                   "errors stay I/O errors"),
    "tests.security.test_password_rule": ("Security: password rule", "blank and short passwords beyond loopback"),
}


# What these suites found, and where it was fixed (kept here so the doc is regenerated whole).
FINDINGS = [
    "Service 422 bodies did not match the OpenAPI schema (`detail` is a sentence, FastAPI documented a list): "
    "errors are now documented as `{detail: str | list}` (memesearch/service/app.py; schemathesis).",
    "`GET /api/memes/99999999999999999999` and `GET /api/jobs/<huge>` were 500 OverflowError: the SQLite store "
    "treats ids beyond 64 bits as unknown (store/sql_store.py, sql_runs.py; schemathesis).",
    "A NUL character in a keyword query raised `sqlite3.OperationalError: unterminated string` from FTS5: "
    "stripped when quoting (store/sqlite_text.py; Hypothesis).",
    "A full disk surfaced as a raw `sqlite3.OperationalError` traceback from `memesearch index`: now a "
    "`DiskFullError` (507) with a hint, the transaction rolled back (store/sqlite.py; tmpfs test).",
    "Index runs failed when the reaper re-kicked a run still scanning (any scan longer than the kick interval, "
    "30 s by default, with two worker threads): both threads scanned, collided on `UNIQUE memes.path`, run failed. "
    "Scans are now serialised per process and re-checked (jobs/manager.py; kill -9 test, test_scan_race).",
    "`memesearch serve` crashed at start (`UnboundLocalError: core`, a mis-indented line in cli/serve_cmd.py "
    "from a refactor): fixed (kill -9 web test).",
    "The web app served any file under the data dir, so a library file swapped for a link to "
    "`web-secret.key` or `memesearch.db` was downloadable: only registered folders and the uploads folder "
    "are servable now (web/views.py `servable_path`; test_web_security).",
    "One damaged image stopped `memesearch index` for the whole library on every run, and answered 500 on "
    "upload and in the ML service: Pillow raised ValueError (a PNG text/ICC chunk inflating past 1 MB, a short "
    "IHDR, truncated APNG acTL/fcTL), IndexError or struct.error (a GIF cut inside a later frame) where the "
    "decoder caught only OSError. Every decoder exception is now that file's recorded error "
    "(library/decode.py; image mutation fuzzer, hostile corpus `broken/`).",
    "PostgreSQL rejected NUL characters in descriptions, tags and OCR text (a 500 on PATCH /api/memes, "
    "a failing `db copy`): both stores now drop control characters at the boundary (text.clean_text; "
    "store contract test).",
    "Issue 11: 300 wrong passwords in 0.35 s were all answered; a session cookie kept working after logout and "
    "after a restart with a new password; CSRF accepted a cookie planted from another port and checked no Origin; "
    "cookies never got `Secure`; a one-space password passed the non-loopback rule; the ML token was accepted "
    "without `Bearer ` and its docs were public. Now: throttling (web/throttle.py), server-side sessions "
    "(web/sessions.py), session-bound CSRF + Origin check and trusted proxies (web/security.py, web/proxies.py), "
    "an 8-character rule, Bearer-only ML auth with docs behind the token (tests/security).",
]


# Everything from this line on in the existing doc is hand-written (long runs, methods) and kept.
HAND_WRITTEN = "<!-- Hand-written sections below: kept as they are by scripts/reliability_report.py. -->"


def hand_written_tail(doc: Path) -> str:
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    return text[text.index(HAND_WRITTEN):] if HAND_WRITTEN in text else ""


def run_suites(xml: Path) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *SUITES]
    print(" ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO).returncode


def outcome(case: ET.Element) -> tuple[str, str]:
    for tag in ("failure", "error"):
        found = case.find(tag)
        if found is not None:
            return "failed", (found.get("message") or "").strip().splitlines()[0][:200] if found.get("message") else ""
    skipped = case.find("skipped")
    if skipped is not None:
        message = " ".join((skipped.get("message") or "").split())
        kind = "xfail" if skipped.get("type") == "pytest.xfail" or "xfail" in message.lower() else "skipped"
        return kind, message
    return "passed", ""


def collect(xml: Path) -> dict[str, list[dict]]:
    modules: dict[str, list[dict]] = defaultdict(list)
    for case in ET.parse(xml).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        state, message = outcome(case)
        modules[case.get("classname", "")].append({
            "name": case.get("name", ""), "time": float(case.get("time", 0)), "state": state, "message": message,
            "cases": int(properties.get("cases", 1)),
        })
    return modules


def result_of(tests: list[dict]) -> str:
    counts = defaultdict(int)
    for test in tests:
        counts[test["state"]] += 1
    parts = [f"{counts[s]} {s}" for s in ("failed", "xfail", "skipped") if counts[s]]
    return "all pass" if not parts else f"{counts['passed']} pass, " + ", ".join(parts)


def render(modules: dict[str, list[dict]]) -> str:
    lines = [
        "# Reliability",
        "",
        "What the hardening suites (issue 7) try against memesearch, and what happened. Generated by",
        "`.venv/bin/python scripts/reliability_report.py` (runs " + ", ".join(f"`{s}`" for s in SUITES) + ");",
        f"last run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Do not edit by hand.",
        "",
        "| Area | What was tried | Tests | Cases | Result | Seconds |",
        "|---|---|---:|---:|---|---:|",
    ]
    total_cases = total_tests = 0
    for module in sorted(modules, key=lambda m: list(AREAS).index(m) if m in AREAS else len(AREAS)):
        tests = modules[module]
        area, tried = AREAS.get(module, (module, ""))
        cases = sum(t["cases"] for t in tests)
        total_cases += cases
        total_tests += len(tests)
        lines.append(f"| {area} | {tried} | {len(tests)} | {cases} | {result_of(tests)} | "
                     f"{sum(t['time'] for t in tests):.0f} |")
    lines += ["", f"Total: {total_tests} tests, {total_cases} cases.", ""]
    lines += ["## Findings", ""] + [f"- {finding}" for finding in FINDINGS] + [""]
    notable = [(m, t) for m, tests in modules.items() for t in tests if t["state"] != "passed"]
    lines += ["## Known issues and failures", ""]
    if not notable:
        lines.append("None in the last run.")
    for module, test in notable:
        lines.append(f"- **{test['state']}** `{module}::{test['name']}`: {test['message']}")
    lines += ["", "## Every test", "", "| Test | Cases | Result | Seconds |", "|---|---:|---|---:|"]
    for module in sorted(modules):
        for test in modules[module]:
            name = test["name"].replace("|", "\\|")
            lines.append(f"| `{module.rsplit('.', 1)[-1]}::{name}` | {test['cases']} | {test['state']} | "
                         f"{test['time']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xml", type=Path, help="use this JUnit XML instead of running the suites")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    args = parser.parse_args()
    code = 0
    xml = args.xml
    if xml is None:
        xml = Path(tempfile.mkdtemp(prefix="reliability-")) / "junit.xml"
        code = run_suites(xml)
    tail = hand_written_tail(args.out)
    args.out.write_text(render(collect(xml)) + ("\n" + tail if tail else ""), encoding="utf-8")
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
