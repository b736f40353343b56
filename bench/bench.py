#!/usr/bin/env python3
"""`make bench`: strata against its peers on synthetic trees (SPEC section 6).

  python3 bench/bench.py            (what `make bench` runs; `make bench-1m` adds 1M files)

For each tree size it runs the shared peers harness (`peers.sh`, next to
`mktree.py` in `${STRATA_SHARED:-../shared}/bench/`) with strata plugged in as
its custom peer: every repetition builds a fresh identical tree and times, for
strata and each peer, a first run (`full`), a run with no change (`nochange`)
and a run after `mktree.py mutate --change 1 --delete 1 --add 1` (`mutate`).
Warm cache, `/usr/bin/time`, medians of the repetitions; the harness waits
before each repetition until creating files is fast again (its "fs probe":
on this machine's journal-less ext4, file creation stays slow for minutes
after a mass deletion), and nothing is deleted until the end.

Then, strata alone: `validate` of 1,000 generated job files, `run-all` of
20 jobs x 5,000 files (compared with the single 100,000-file job), and the
object-store row: one tree to a local destination and to moto's S3 server on
127.0.0.1 (started and stopped here), and `rclone sync` of it to the same
server, as ratios.

Prints wall seconds, CPU seconds, peak RSS and ratios strata/peer, checks the
SPEC targets, and writes bench/results/: bench-<N>.jsonl (one object per
measurement, from the harness), extras.jsonl, summary.txt.

Environment (all optional):
  BENCH_FILES   tree sizes, space-separated        (default "10000 100000")
  BENCH_REPS    repetitions per size               (default 3; 1 from 1,000,000 files)
  BENCH_PEERS   peers                              (default "find cp rsync rsnapshot rdiff-backup";
                                                    from 1,000,000 files "find cp rsync")
  BENCH_EXTRAS  0 skips validate and run-all of 20 jobs
  BENCH_OBJECT  0 skips the object-store row (moto_server on loopback vs a local
                destination: first run, no-change run, 1% change; requests and
                bytes uploaded counted)
  BENCH_OBJECT_FILES  the object-store row's tree size   (default 10000)
  BENCH_RCLONE  0 leaves rclone out of the object-store row (else installed with
                apt-get where missing, and `rclone sync` to the same moto server timed)
  BENCH_KEEP    1 keeps the trees under /tmp afterwards
  STRATA_BIN    the binary          (default $CARGO_TARGET_DIR/release/strata, or target/...)
  STRATA_SHARED where bench/mktree.py lives        (default ../shared)
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED = Path(os.environ.get("STRATA_SHARED", REPO.parent / "shared")).resolve()
MKTREE = SHARED / "bench" / "mktree.py"
PEERS_SH = SHARED / "bench" / "peers.sh"
PROBE_MAX_US = 75
MULTI_JOBS, MULTI_FILES = 20, 5000

# strata as the harness's custom peer: a job file for this repetition's tree
# (made once, beside the destination), then `run-all` on it. Stage timings go
# to the harness's log, for the summary.
STRATA_CMD = r"""J=$DEST.jobs
[ -d "$J" ] || mkdir -p "$J"
printf '{"source": "%s", "destination": "%s", "track_dirs": ["."]}\n' "$SRC" "$DEST" >"$J/bench.json"
export STRATA_STATE_DIR=$DEST.state
RUST_LOG=strata::timing=debug NO_COLOR=1 exec "$STRATA_BENCH_BIN" -q --jobs-dir "$J" run-all"""


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    say(f"bench: {msg}")
    sys.exit(1)


def have(cmd):
    return shutil.which(cmd) is not None


def ensure_tools(peers):
    """Install what is missing with apt-get; return the peers that can run."""
    wanted = {"time": Path("/usr/bin/time").exists(), "rsync": have("rsync")}
    if "rdiff-backup" in peers:
        wanted["rdiff-backup"] = have("rdiff-backup")
    missing = [pkg for pkg, ok in wanted.items() if not ok]
    if missing and have("apt-get"):
        say(f"== installing {' '.join(missing)} with apt-get")
        install = ["apt-get", "install", "-y", *missing]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL)
    if not Path("/usr/bin/time").exists():
        die("GNU time is needed at /usr/bin/time (apt-get install time)")
    if not have("rsync"):
        die("rsync is needed by the peers harness (apt-get install rsync)")
    if "rdiff-backup" in peers and not have("rdiff-backup"):
        say("== skipping peer rdiff-backup: it could not be installed")
        peers = [p for p in peers if p != "rdiff-backup"]
    return peers


def probe_us(directory):
    """Microseconds to create an empty file (the harness's fs probe)."""
    d = tempfile.mkdtemp(prefix="probe.", dir=directory)
    t = time.perf_counter()
    for i in range(2000):
        os.close(os.open(os.path.join(d, f"p{i}"), os.O_WRONLY | os.O_CREAT, 0o644))
    return int((time.perf_counter() - t) / 2000 * 1e6)


def settle(directory, max_s=330):
    waited = 0
    while True:
        us = probe_us(directory)
        if us <= PROBE_MAX_US or waited >= max_s:
            return us
        say(f"  (file creation slow: {us} us; waiting 30 s)")
        time.sleep(30)
        waited += 30


def warm(*trees):
    for tree in trees:
        subprocess.run(["find", str(tree), "-printf", "%s %T@\n"], stdout=subprocess.DEVNULL)
        subprocess.run(
            f"find '{tree}' -type f -print0 | xargs -0 -r cat >/dev/null", shell=True
        )


def timed(cmd, **kwargs):
    """Run under /usr/bin/time: (seconds, max RSS KiB, user s, sys s, rc)."""
    with tempfile.NamedTemporaryFile("r") as tf:
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M %U %S", "-o", tf.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kwargs,
        )
        e, m, u, s = tf.read().split()[-4:]
    return float(e), int(m), float(u), float(s), p.returncode, p.stderr.decode(errors="replace")


def stage_times(text):
    """The `strata::timing` fields of a run's log, summed over jobs."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    out = {}
    for line in text.splitlines():
        if "stage times" not in line:
            continue
        for key, val in re.findall(r"(\w+_s)=([0-9.e-]+)", line):
            out[key] = out.get(key, 0.0) + float(val)
    return out


def peers_run(files, reps, peers, strata):
    work = Path(f"/tmp/bench-peers-{files}")
    outfile = RESULTS / f"bench-{files}.jsonl"
    env = dict(
        os.environ,
        FILES=str(files),
        REPS=str(reps),
        PEERS=" ".join(peers),
        WORK=str(work),
        OUTFILE=str(outfile),
        CUSTOM_NAME="strata",
        CUSTOM_CMD=STRATA_CMD,
        STRATA_BENCH_BIN=str(strata),
        KEEP="1",
    )
    say(f"== {files} files: peers harness, {reps} repetition(s), peers: {' '.join(peers)} strata")
    p = subprocess.run(["bash", str(PEERS_SH)], env=env, stdout=subprocess.PIPE)
    if p.returncode != 0:
        die(f"peers.sh failed (exit {p.returncode})")
    rows = [json.loads(line) for line in outfile.read_text().splitlines() if line.strip()]
    # strata's stage timings, from the harness's logs.
    for r in rows:
        if r.get("peer") == "strata":
            log = work / "logs" / f"strata.{r['phase']}.{r['rep']}.log"
            if log.exists():
                r["stages"] = stage_times(log.read_text(errors="replace"))
    outfile.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    check_mirror(work / "r1" / "src", work / "r1" / "dest" / "strata" / "mirror")
    return work, rows


def check_mirror(src, mirror):
    """strata's latest mirror against the source: names, sizes, mtimes, links."""
    def listing(root):
        p = subprocess.run(
            f"cd '{root}' && find . -mindepth 1 \\( -type f -printf '%P|f|%s|%T@|%m\\n' \\) "
            f"-o \\( -type l -printf '%P|l|%l\\n' \\) | LC_ALL=C sort | md5sum",
            shell=True, capture_output=True, text=True,
        )
        return p.stdout
    if not mirror.exists():
        say("  check strata: no mirror to check")
        return
    same = listing(src) == listing(mirror)
    say(f"  check strata: latest mirror {'matches' if same else 'DOES NOT MATCH'} the source "
        "(names, sizes, mtimes, modes, symlink targets)")
    if not same:
        die("strata's mirror differs from its source")


def job_json(i, root):
    """A varied, valid job file."""
    rules = [
        {"track_dirs": ["."]},
        {"track_dirs": ["Documents", "Projects/*"], "include_dirs": ["Music"],
         "exclude_dirs": ["node_modules:rec", ".cache"], "exclude_files": ["*.log:rec"]},
        {"track_files": ["*.rs:rec", "*.md:rec"], "exclude_dirs": ["target:rec"],
         "compare": "checksum"},
        {"include_dirs": ["."], "include_files": [".*"], "exclude_files": ["*.tmp:rec", "*~:rec"]},
    ][i % 4]
    schedules = ["30 2 * * *", "*/15 9-18 * * MON-FRI", "@daily", "0 0 13 * 5", None]
    job = {"source": f"{root}/src/s{i:04d}", "destination": f"{root}/dest/d{i:04d}", **rules}
    if schedules[i % 5]:
        job["schedule"] = schedules[i % 5]
    if i % 3 == 0:
        job["retention"] = {"keep_last": 10, "keep_daily": 7, "keep_weekly": 4,
                            "keep_within": "30d"}
    if i % 7 == 0:
        job["enabled"] = False
    return json.dumps(job, indent=2) + "\n"


def bench_validate(strata, reps, extras):
    root = Path(tempfile.mkdtemp(prefix="bench-validate-", dir="/tmp"))
    jobs = root / "jobs.d"
    jobs.mkdir()
    for i in range(1000):
        (root / "src" / f"s{i:04d}").mkdir(parents=True)
        (jobs / f"job{i:04d}.json").write_text(job_json(i, root))
    samples = []
    for rep in range(max(reps, 5)):
        e, m, u, s, rc, err = timed([str(strata), "validate", str(jobs)])
        if rc != 0:
            die(f"validate of the generated jobs failed:\n{err}")
        samples.append({"bench": "extra", "what": "validate-1000", "rep": rep + 1,
                        "seconds": e, "max_rss_mib": round(m / 1024, 1), "user_s": u,
                        "sys_s": s, "rc": rc})
    extras.extend(samples)
    shutil.rmtree(root)
    return samples


def bench_multi(strata, reps, extras):
    """run-all of 20 jobs x 5,000 files: full, nochange, mutate."""
    base = Path(f"/tmp/bench-multi-{MULTI_JOBS}x{MULTI_FILES}")
    if base.exists():
        shutil.rmtree(base)
    samples = []
    for rep in range(1, reps + 1):
        root = base / f"r{rep}"
        jobs = root / "jobs.d"
        jobs.mkdir(parents=True)
        for j in range(MULTI_JOBS):
            src = root / f"src{j:02d}"
            subprocess.run([sys.executable, str(MKTREE), "create", str(src), "--files",
                            str(MULTI_FILES), "--seed", str(j + 1)], check=True,
                           stdout=subprocess.DEVNULL)
            (jobs / f"job{j:02d}.json").write_text(json.dumps(
                {"source": str(src), "destination": str(root / f"dest{j:02d}"),
                 "track_dirs": ["."]}) + "\n")
        subprocess.run(["sync"])
        srcs = [root / f"src{j:02d}" for j in range(MULTI_JOBS)]
        us = settle(base)
        for phase in ["full", "nochange", "mutate"]:
            if phase == "mutate":
                for j, src in enumerate(srcs):
                    subprocess.run([sys.executable, str(MKTREE), "mutate", str(src), "--change",
                                    "1", "--delete", "1", "--add", "1", "--seed", str(j + 1),
                                    "--mtime", "1735689600"], check=True,
                                   stdout=subprocess.DEVNULL)
                subprocess.run(["sync"])
            warm(*srcs)
            e, m, u, s, rc, err = timed(
                [str(strata), "-q", "--jobs-dir", str(jobs), "run-all"],
                env=dict(os.environ, RUST_LOG="strata::timing=debug", NO_COLOR="1"))
            subprocess.run(["sync"])
            row = {"bench": "extra", "what": f"run-all-{MULTI_JOBS}x{MULTI_FILES}",
                   "phase": phase, "rep": rep, "seconds": e, "max_rss_mib": round(m / 1024, 1),
                   "user_s": u, "sys_s": s, "rc": rc, "fs_probe_us_per_create": us,
                   "stages": stage_times(err)}
            samples.append(row)
            say(f"  rep {rep} run-all {MULTI_JOBS}x{MULTI_FILES} {phase:<9} {e:8.2f}s  "
                f"rss {m / 1024:7.1f} MiB  (rc {rc})")
    extras.extend(samples)
    return base, samples


def moto_binary():
    """moto's S3 server, where the tests find it (tests/common/s3.rs)."""
    if os.environ.get("STRATA_MOTO_SERVER"):
        return os.environ["STRATA_MOTO_SERVER"]
    venv = Path.home() / ".cache/strata-test/moto/bin/moto_server"
    if venv.exists():
        return str(venv)
    return shutil.which("moto_server")


def s3_request(port, method, path):
    """One plain request to moto (it checks no signature; any credential will do)."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "PUT" else None)
    req.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/"
                   "aws4_request, SignedHeaders=host, Signature=0")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def object_counts(text):
    """(requests, bytes uploaded) from a run's `strata::timing` log."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    found = re.findall(r"object store: (\d+) requests, (\d+) bytes uploaded", text)
    if not found:
        return None, None
    return sum(int(r) for r, _ in found), sum(int(u) for _, u in found)


def ensure_rclone():
    """rclone, installed with apt-get where missing (the object-store row's
    peer); None where it cannot be had."""
    if not have("rclone") and have("apt-get"):
        say("== installing rclone with apt-get")
        install = ["apt-get", "install", "-y", "rclone"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("rclone")


def rclone_bytes(text):
    """Bytes rclone transferred, from the stats of its JSON log."""
    found = None
    for line in text.splitlines():
        try:
            stats = json.loads(line).get("stats")
        except (ValueError, AttributeError):
            continue
        if isinstance(stats, dict) and "bytes" in stats:
            found = stats["bytes"]
    return found


def bench_object(strata, extras):
    """The object-store row: one tree backed up to a local destination and to
    moto's S3 server on loopback, and `rclone sync` of it to the same server
    (where rclone can be installed), first run, no-change run, 1% change;
    wall time as ratios object/local and object/rclone, requests and bytes
    uploaded counted against the bytes the local run copied (the changed
    bytes)."""
    import socket
    moto = moto_binary()
    if not moto:
        say("== skipping the object-store row: no moto_server (scripts/test-deps.sh installs it)")
        return None, []
    files = int(os.environ.get("BENCH_OBJECT_FILES", "10000"))
    base = Path(tempfile.mkdtemp(prefix="bench-object-", dir="/tmp"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    try:
        for _ in range(600):  # a readiness wait, up to a minute
            try:
                if s3_request(port, "GET", "/") == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            say("== skipping the object-store row: moto_server did not start")
            return base, []
        s3_request(port, "PUT", "/bench")
        rclone = None if os.environ.get("BENCH_RCLONE") == "0" else ensure_rclone()
        if rclone:
            s3_request(port, "PUT", "/bench-rclone")
        else:
            say("== the object-store row without rclone: it could not be installed")
        src = base / "src"
        subprocess.run([sys.executable, str(MKTREE), "create", str(src), "--files", str(files),
                        "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
        jobs = base / "jobs.d"
        jobs.mkdir()
        (jobs / "local.json").write_text(json.dumps(
            {"source": str(src), "destination": str(base / "dest"), "track_dirs": ["."]}) + "\n")
        (jobs / "object.json").write_text(json.dumps(
            {"source": str(src), "destination": "s3://bench/object",
             "s3": {"endpoint": f"http://127.0.0.1:{port}"}, "track_dirs": ["."]}) + "\n")
        env = dict(os.environ, RUST_LOG="strata::timing=debug", NO_COLOR="1",
                   STRATA_STATE_DIR=str(base / "state"), AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench")
        env.pop("AWS_ENDPOINT_URL", None)
        # rclone configured by environment alone: remote "moto", the same server.
        env.update(RCLONE_CONFIG_MOTO_TYPE="s3", RCLONE_CONFIG_MOTO_PROVIDER="Other",
                   RCLONE_CONFIG_MOTO_ENDPOINT=f"http://127.0.0.1:{port}",
                   RCLONE_CONFIG_MOTO_ACCESS_KEY_ID="bench",
                   RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY="bench",
                   RCLONE_CONFIG_MOTO_REGION="us-east-1", RCLONE_CONFIG="/dev/null")
        kinds = ["local", "object"] + (["rclone"] if rclone else [])
        say(f"== object store: {files} files, local destination vs moto on 127.0.0.1:{port}"
            + (" vs rclone sync to it" if rclone else ""))
        for phase in ["full", "nochange", "mutate"]:
            if phase == "mutate":
                subprocess.run([sys.executable, str(MKTREE), "mutate", str(src), "--change", "1",
                                "--delete", "1", "--add", "1", "--seed", "1",
                                "--mtime", "1735689600"], check=True, stdout=subprocess.DEVNULL)
            warm(src)
            row = {"bench": "extra", "what": f"object-{files}", "phase": phase}
            for kind in kinds:
                if kind == "rclone":
                    cmd = [rclone, "sync", str(src), "moto:bench-rclone/object",
                           "--use-json-log", "--log-level", "NOTICE", "--stats", "1h",
                           "--stats-log-level", "NOTICE"]
                else:
                    cmd = [str(strata), "--json", "--jobs-dir", str(jobs), "run", kind]
                t = time.perf_counter()
                run_env = env
                if kind == "rclone":
                    # rclone 1.60's S3 client cannot load a CA bundle into its
                    # own transport (and the server is plain http on loopback).
                    run_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
                p = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
                wall = time.perf_counter() - t
                if p.returncode != 0:
                    die(f"the {kind} run ({phase}) failed:\n{p.stdout}{p.stderr}")
                row[f"{kind}_s"] = round(wall, 3)
                if kind == "rclone":
                    row["rclone_uploaded"] = rclone_bytes(p.stderr)
                    continue
                stats = json.loads(p.stdout)["jobs"][0]["stats"]
                row[f"{kind}_bytes_copied"] = stats.get("bytes_copied", 0)
                if kind == "object":
                    row["requests"], row["uploaded"] = object_counts(p.stderr)
            samples.append(row)
            peer = (f"  rclone {row['rclone_s']:7.2f}s (uploaded {row['rclone_uploaded']} B)"
                    if rclone else "")
            say(f"  {phase:<9} local {row['local_s']:7.2f}s  object {row['object_s']:7.2f}s  "
                f"requests {row['requests']}  uploaded {row['uploaded']} B "
                f"(local copied {row['local_bytes_copied']} B){peer}")
        # The object store's latest state is the source's: restore and compare.
        restored = base / "restored"
        p = subprocess.run([str(strata), "--jobs-dir", str(jobs), "restore", "object", "--to",
                            str(restored)], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            die(f"restore from the object store failed:\n{p.stdout}{p.stderr}")
        check_mirror(src, restored)
    finally:
        server.terminate()
        server.wait()
    extras.extend(samples)
    return base, samples


def med(rows, key):
    vals = [r[key] for r in rows]
    return statistics.median(vals) if vals else float("nan")


def summarize(all_rows, extras):
    lines = []
    out = lines.append
    targets = []
    for files, rows in all_rows.items():
        meas = [r for r in rows if "peer" in r and r.get("status") == "ok"]
        groups = {}
        for r in meas:
            groups.setdefault((r["peer"], r["phase"]), []).append(r)
        peers = []
        for r in meas:
            if r["peer"] not in peers:
                peers.append(r["peer"])
        out("")
        out(f"FILES={files}: median of reps [min]; cpu = user+sys; rss = peak of the largest "
            "process; ratio = strata / peer (wall)")
        out(f"{'phase':<9} {'tool':<13} {'reps':>4} {'wall_s [min]':>17} {'cpu_s':>7} "
            f"{'rss_MiB':>8} {'B/file':>7} {'strata/peer':>12}")
        for phase in ["full", "nochange", "mutate"]:
            s_rows = groups.get(("strata", phase), [])
            s_wall = med(s_rows, "seconds")
            for peer in ["strata"] + [p for p in peers if p != "strata"]:
                g = groups.get((peer, phase))
                if not g:
                    continue
                wall = med(g, "seconds")
                cpu = statistics.median(x["user_s"] + x["sys_s"] for x in g)
                rss = med(g, "max_rss_mib")
                per_file = rss * 1024 * 1024 / files
                ratio = ("" if peer == "strata" else "n/a" if not wall
                         else f"{s_wall / wall:10.2f}x")
                out(f"{phase:<9} {peer:<13} {len(g):>4} {wall:8.2f} [{min(x['seconds'] for x in g):6.2f}] "
                    f"{cpu:7.2f} {rss:8.1f} {per_file:7.0f} {ratio:>12}")
            cp_rows = groups.get(("cp", phase), [])
            if phase == "full" and cp_rows and s_wall:
                # strata's run ends with its data durable; cp -a leaves its
                # data dirty and peers.sh times the sync that follows apart.
                durable = statistics.median(x["seconds"] + x.get("sync_s", 0) for x in cp_rows)
                out(f"{'':<9} cp -a with the sync after it: {durable:.2f} s; "
                    f"strata / that {s_wall / durable:.2f}x (not a SPEC target)")
            stages = [r["stages"] for r in s_rows if r.get("stages")]
            if stages:
                keys = ["recover_s", "scan_s", "diff_s", "apply_s", "sync_s", "commit_s"]
                parts = " ".join(f"{k[:-2]} {statistics.median(s.get(k, 0) for s in stages):.3f}"
                                 for k in keys)
                out(f"{'':<9} strata stages (median s): {parts}")
        # SPEC section 6 targets, on the 100,000-file tree (and reported for every size).
        def ratio(phase, peer):
            s, p = groups.get(("strata", phase)), groups.get((peer, phase))
            if not s or not p or not med(p, "seconds"):
                return None  # /usr/bin/time counts 10 ms steps: too small a tree
            return med(s, "seconds") / med(p, "seconds")
        checks = [
            ("no-change run <= 1.5x find", ratio("nochange", "find"), 1.5),
            ("1%-changed run <= 2x find", ratio("mutate", "find"), 2.0),
            ("first run <= 1.0x cp -a", ratio("full", "cp"), 1.0),
        ]
        for phase in ["nochange", "mutate"]:
            others = [p for p in peers if p not in ("strata", "find", "cp")]
            worst = [ratio(phase, p) for p in others if ratio(phase, p) is not None]
            if worst:
                checks.append((f"{phase} faster than every peer (max ratio)", max(worst), 1.0))
        rss = max((med(groups.get(("strata", ph), []), "max_rss_mib")
                   for ph in ["full", "nochange", "mutate"] if groups.get(("strata", ph))),
                  default=None)
        if rss is not None:
            checks.append(("peak RSS <= 300 B/file (worst phase)",
                           rss * 1024 * 1024 / files, 300.0))
        if files == 100000:  # the SPEC's targets are for a 100,000-file tree
            for name, value, limit in checks:
                targets.append((files, name, value, limit))
    multi = [r for r in extras if r["what"].startswith("run-all-")]
    if multi:
        out("")
        out(f"run-all of {MULTI_JOBS} jobs x {MULTI_FILES} files (median of reps), "
            "vs one 100,000-file job:")
        single = {ph: med([r for r in all_rows.get(100000, [])
                           if r.get("peer") == "strata" and r.get("phase") == ph], "seconds")
                  for ph in ["full", "nochange", "mutate"]}
        for phase in ["full", "nochange", "mutate"]:
            g = [r for r in multi if r["phase"] == phase]
            if not g:
                continue
            wall = med(g, "seconds")
            cpu = statistics.median(x["user_s"] + x["sys_s"] for x in g)
            vs = single.get(phase)
            vs_txt = f"{wall / vs:6.2f}x the single job" if vs and vs == vs else ""
            out(f"  {phase:<9} {wall:8.2f} s  cpu {cpu:6.2f} s  rss {med(g, 'max_rss_mib'):6.1f} MiB  "
                f"{vs_txt}")
    obj = [r for r in extras if r["what"].startswith("object-")]
    if obj:
        out("")
        out(f"object store ({obj[0]['what'][len('object-'):]} files, moto on loopback) vs the "
            "local destination and rclone sync to the same server; ratios = strata's object "
            "run / local run, / rclone (wall); requests: the run's, lease taken, not yet "
            "released; uploaded: every byte put, index and metadata included, against the "
            "bytes the local run copied (what changed)")
        for r in obj:
            ratio = f"{r['object_s'] / r['local_s']:6.2f}x" if r["local_s"] else "n/a"
            up = r["uploaded"]
            vs = (f" = {up / r['local_bytes_copied']:.2f}x the bytes changed"
                  if r["local_bytes_copied"] else "")
            peer = ""
            if r.get("rclone_s"):
                peer = (f"  rclone {r['rclone_s']:7.2f} s: {r['object_s'] / r['rclone_s']:5.2f}x"
                        f" (it uploaded {r['rclone_uploaded']} B)")
            out(f"  {r['phase']:<9} local {r['local_s']:7.2f} s  object {r['object_s']:7.2f} s "
                f"{ratio}{peer}  requests {r['requests']:>6}  uploaded {up:>11} B{vs}")
        quiet = [r for r in obj if r["phase"] == "nochange"]
        if quiet and quiet[0]["requests"] is not None:
            targets.append(("-", "object store: no-change run requests (O(1))",
                            float(quiet[0]["requests"]), 8.0))
    val = [r for r in extras if r["what"] == "validate-1000"]
    if val:
        wall = med(val, "seconds")
        out("")
        out(f"validate of 1,000 job files: {wall:.3f} s median of {len(val)} "
            f"(rss {med(val, 'max_rss_mib'):.1f} MiB)")
        targets.append(("-", "validate of 1,000 job files < 1 s", wall, 1.0))
    out("")
    out("SPEC section 6 targets (on the 100,000-file tree):")
    for files, name, value, limit in targets:
        if value is None:
            continue
        ok = "met" if value <= limit else "NOT MET"
        unit = ("s" if "validate" in name else "B/file" if "B/file" in name
                else "" if "requests" in name else "x")
        out(f"  [{ok:>7}] {files:>7} files  {name}: {value:.2f} {unit} (limit {limit:g})")
    return "\n".join(lines) + "\n"


def main():
    if not MKTREE.exists():
        die(f"mktree.py not found at {MKTREE}: set STRATA_SHARED to the directory that holds "
            "bench/mktree.py (the shared project folder)")
    if not PEERS_SH.exists():
        die(f"peers.sh not found at {PEERS_SH} (it lives beside mktree.py)")
    target = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
    strata_src = Path(os.environ.get("STRATA_BIN", target / "release" / "strata"))
    if not strata_src.exists():
        die(f"no strata binary at {strata_src}: run `cargo build --release` (make bench does)")
    sizes = [int(x) for x in os.environ.get("BENCH_FILES", "10000 100000").split()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A private copy: a rebuild during the bench must not change what is measured.
    bindir = Path(tempfile.mkdtemp(prefix="bench-bin-", dir="/tmp"))
    strata = bindir / "strata"
    shutil.copy2(strata_src, strata)
    version = subprocess.run([str(strata), "--version"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    say(f"== strata: {version.strip()} ({commit}); {os.cpu_count()} cores; warm cache")
    t0 = time.time()
    all_rows, works, extras = {}, [], []
    try:
        for files in sizes:
            big = files >= 1_000_000
            reps = int(os.environ.get("BENCH_REPS", "1" if big else "3"))
            default_peers = "find cp rsync" if big else "find cp rsync rsnapshot rdiff-backup"
            peers = ensure_tools(os.environ.get("BENCH_PEERS", default_peers).split())
            work, rows = peers_run(files, reps, peers, strata)
            works.append(work)
            all_rows[files] = rows
        if os.environ.get("BENCH_EXTRAS", "1") != "0":
            say("== validate of 1,000 job files")
            bench_validate(strata, 5, extras)
            say(f"== run-all of {MULTI_JOBS} jobs x {MULTI_FILES} files")
            base, _ = bench_multi(strata, int(os.environ.get("BENCH_REPS", "3")), extras)
            works.append(base)
        if os.environ.get("BENCH_OBJECT", "1") != "0":
            base, _ = bench_object(strata, extras)
            if base:
                works.append(base)
        if extras:
            for r in extras:
                r.update(strata_commit=commit)
            (RESULTS / "extras.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in extras))
        text = summarize(all_rows, extras)
        head = (f"strata {version.strip()} ({commit}), {os.cpu_count()} cores, warm page cache, "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{int(time.time() - t0)} s\n")
        (RESULTS / "summary.txt").write_text(head + text)
        print(head + text)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            for w in works:
                shutil.rmtree(w, ignore_errors=True)
            say("== removed the trees; file creation on /tmp may be slow for a few minutes")
        shutil.rmtree(bindir, ignore_errors=True)


if __name__ == "__main__":
    main()
