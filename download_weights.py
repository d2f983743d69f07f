"""Fetch the authors' pretrained RH-emo weights (python3 download_weights.py [--output PATH] [--force]).

Downloads the authors' published file (Google Drive id 1vCX0KHW44Q9plKTdkgyKZRcyjfgVA7jX) with gdown to
models/pretrained_RHemo, the default r2he_model_path of the SER experiments. The download goes to a temporary
file first; it is put in place only after it loaded into our RH-emo with strict key matching, and the script
then prints its size, sha256 and the model settings found in it. An existing file is checked, not downloaded
again, unless --force is given. Exit code 1 when the download or the check fails (the message says why).

Examples:
    python3 download_weights.py
    python3 download_weights.py --output /data/weights/ --force
"""
import argparse
import sys
from pathlib import Path

from rhemo.train.weights import DEFAULT_PATH, FILE_NAME, WeightsError, download_pretrained, verify_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH,
                        help=f"Where to save the weights; a folder gets '{FILE_NAME}' inside (default: "
                             f"{DEFAULT_PATH}).")
    parser.add_argument("--force", action="store_true", help="Download again even if the file exists.")
    args = parser.parse_args(argv)
    target = args.output / FILE_NAME if args.output.is_dir() else args.output
    try:
        if target.exists() and not args.force:
            print(f"{target} already exists (use --force to download it again); checking it")
            found = verify_weights(target)
        else:
            found = verify_weights(download_pretrained(target, force=True))
    except WeightsError as exc:
        print(f"download_weights.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"RH-emo weights ready at {target} ({found['bytes'] / 1e6:.1f} MB, sha256 {found['sha256']}, "
          f"quat={found['quat']}, hidden_size={found['hidden_size']}, num_classes={found['num_classes']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
