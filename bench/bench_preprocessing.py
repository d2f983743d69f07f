"""Preprocessing speed and memory: our preprocessing.py against a re-creation of the authors' pipeline.

    .venv/bin/python bench/bench_preprocessing.py            # 200 and 1,500 utterances
    .venv/bin/python bench/bench_preprocessing.py --quick    # 40 and 150 utterances

Generates synthetic IEMOCAP-layout corpora (rhemo.data.synthetic; cached under --workdir), then runs, each in
its own process and timed from launch to exit:

* ours: ``preprocessing.py --dataset iemocap --workers W`` (default W = 2);
* authors': the reference procedure re-stated from its description: one process, ``librosa.load(sr=16000)``
  per file, signed-max silence test, zero-pad to 4 s, ``np.rot90(abs(scipy.signal.stft(...)))``, pointer
  segmentation, label lookup by scanning the EmoEvaluation file for the first line containing the id,
  everything kept in dicts in RAM and saved with ``np.save`` at the end. Only the "complete" pass is run (the
  original also recomputes the filtered subset twice), so the baseline is if anything flattered.

Peak RSS is sampled from /proc every 20 ms over the whole process tree (parent + workers). Goals (issue 3):
throughput ≥ 3× the authors' on 2 cores, and our peak RSS flat from 200 to 1,500 utterances.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The authors' pipeline, re-stated from the reference description; run with `python -c` in a fresh process.
AUTHORS_PIPELINE = r'''
import os, sys, numpy as np, librosa, scipy.signal
root, out = sys.argv[1], sys.argv[2]
SR, SEQ = 16000, 4.0
def spectrum_fast(x):
    return np.rot90(np.abs(scipy.signal.stft(x, window="hamming", nperseg=256, noverlap=128)[2]))
def label_of(path):
    name = os.path.basename(path)[:-4]
    session = int(name[3:5])
    txt = os.path.join(root, f"Session{session}", "dialog", "EmoEvaluation", "_".join(name.split("_")[:-1]) + ".txt")
    with open(txt) as f:
        for line in f:
            if name in line:
                fields = line.split("\t")
                vad = [float(v) for v in fields[-1].strip().strip("[]").split(",")]
                return fields[2], vad
seq_len_samps = int(SEQ * SR)
seq_len_frames = spectrum_fast(np.zeros(seq_len_samps)).shape[0]
sounds = []
for session in os.listdir(root):
    if "Session" in session:
        wav_root = os.path.join(root, session, "sentences", "wav")
        for dialog in os.listdir(wav_root):
            for f in os.listdir(os.path.join(wav_root, dialog)):
                if f.endswith("wav"):
                    sounds.append(os.path.join(wav_root, dialog, f))
predictors, targets = {}, {}
for path in sounds:
    try:
        label, vad = label_of(path)
        samples, _ = librosa.load(path, sr=SR)
        if np.max(samples) > 0.005:
            if len(samples) < seq_len_samps:
                pad = np.zeros(seq_len_samps)
                pad[:len(samples)] = samples
                samples = pad
            feats = spectrum_fast(samples)
            n = feats.shape[0]
            cut = []
            for start in np.arange(0, n, seq_len_frames, dtype=int):
                if start + seq_len_frames <= n:
                    cut.append(feats[start:start + seq_len_frames])
                elif n > 2 * seq_len_frames:
                    cut.append(feats[-seq_len_frames:])
            cut = np.array(cut)
            if not np.isnan(np.std(cut)):
                predictors[path] = cut
                targets[path] = np.array([[label, *vad]] * len(cut))
    except Exception:  # the reference swallows every per-file error
        pass
np.save(os.path.join(out, "iemocap_complete_predictors.npy"), predictors)
np.save(os.path.join(out, "iemocap_completeVAD_target.npy"), targets)
print(sum(len(v) for v in predictors.values()))
'''


def _tree_rss_kb(pid: int) -> int:
    """Sum of VmRSS (kB) of pid and all its descendants, read from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """Run cmd; return (wall seconds, CPU seconds of its process tree, peak tree RSS in MiB, stdout).

    CPU time (user + sys, workers included) is shown beside wall time because a shared machine makes wall
    time noisy: on a busy box two workers do not get two cores.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                done.wait(0.02)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)  # usage includes the reaped worker processes
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        thread.join()
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{err.read()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, peak[0] / 1024, out.read()


def corpus(workdir: Path, n: int, seed: int) -> Path:
    """A cached synthetic IEMOCAP corpus of n utterances (generated once)."""
    from rhemo.data import synthetic

    root = workdir / f"iemocap_{n}_seed{seed}"
    try:
        synthetic.read_manifest(root)
        return root
    except synthetic.SyntheticCorpusError:
        pass
    print(f"generating {n} synthetic utterances in {root} ...", flush=True)
    synthetic.make_corpus(root, "iemocap", n_utterances=n, seed=seed, force=True, progress=True)
    return root


def corpus_seconds(root: Path) -> float:
    from rhemo.data.synthetic import read_manifest

    return float(read_manifest(root)["total_seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora (40 and 150 utterances)")
    parser.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="corpus sizes")
    parser.add_argument("--workers", type=int, default=2, help="our worker processes (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rhemo_bench_preprocessing"),
                        help="cache of generated corpora and outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = args.sizes or ((40, 150) if args.quick else (200, 1500))
    args.workdir.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()[0]  # other users of the machine, before our runs add to it
    rows = []
    for n in sizes:
        root = corpus(args.workdir, n, args.seed)
        audio_s = corpus_seconds(root)
        out = args.workdir / f"out_{n}"
        shutil.rmtree(out, ignore_errors=True)
        ours_wall, ours_cpu, ours_rss, _ = run_measured(
            [sys.executable, str(REPO / "preprocessing.py"), "--dataset", "iemocap", "--input", str(root),
             "--output", str(out / "ours"), "--workers", str(args.workers), "--no-progress"], REPO)
        (out / "authors").mkdir(parents=True)
        auth_wall, auth_cpu, auth_rss, _ = run_measured(
            [sys.executable, "-c", AUTHORS_PIPELINE, str(root), str(out / "authors")], REPO)
        shutil.rmtree(out, ignore_errors=True)
        rows.append({"utterances": n, "audio_seconds": round(audio_s, 1),
                     "ours_seconds": round(ours_wall, 2), "ours_cpu_seconds": round(ours_cpu, 2),
                     "ours_utt_per_s": round(n / ours_wall, 1), "ours_peak_rss_mib": round(ours_rss, 1),
                     "authors_seconds": round(auth_wall, 2), "authors_cpu_seconds": round(auth_cpu, 2),
                     "authors_utt_per_s": round(n / auth_wall, 1), "authors_peak_rss_mib": round(auth_rss, 1),
                     "throughput_ratio": round(auth_wall / ours_wall, 2),
                     "cpu_ratio": round(auth_cpu / ours_cpu, 2)})
        r = rows[-1]
        print(f"{n:5d} utt ({audio_s / 60:.1f} min audio) | ours {r['ours_utt_per_s']:6.1f} utt/s, "
              f"{r['ours_seconds']:6.2f} s wall, {r['ours_cpu_seconds']:6.2f} s CPU, "
              f"{r['ours_peak_rss_mib']:5.0f} MiB | authors {r['authors_utt_per_s']:6.1f} utt/s, "
              f"{r['authors_seconds']:6.2f} s wall, {r['authors_cpu_seconds']:6.2f} s CPU, "
              f"{r['authors_peak_rss_mib']:5.0f} MiB | wall ratio {r['throughput_ratio']:.2f}x, "
              f"CPU ratio {r['cpu_ratio']:.2f}x", flush=True)

    small, large = rows
    ratio = large["throughput_ratio"]
    growth = large["ours_peak_rss_mib"] / small["ours_peak_rss_mib"]
    auth_growth = large["authors_peak_rss_mib"] / small["authors_peak_rss_mib"]
    load = load_before
    print(f"\nthroughput vs authors at {large['utterances']} utterances, {args.workers} workers on "
          f"{os.cpu_count()} cores (load average before the runs {load:.1f}): {ratio:.2f}x wall "
          f"(goal >= 3x: {'MET' if ratio >= 3 else 'NOT MET'}); CPU time {large['cpu_ratio']:.2f}x less")
    if load > os.cpu_count():
        print("  note: the machine is busier than its core count; wall-time ratios understate the parallel gain")
    print(f"peak RSS {small['utterances']} -> {large['utterances']} utterances: ours x{growth:.2f} "
          f"(goal flat, <= 1.10: {'MET' if growth <= 1.10 else 'NOT MET'}); authors x{auth_growth:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"workers": args.workers, "cpu_count": os.cpu_count(), "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
