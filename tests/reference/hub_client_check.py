#!/usr/bin/env python3
"""Python's huggingface_hub against the loopback hub of our tests, and the two clients' caches.

Run by hand, never by CI (it needs huggingface_hub): it is driven by
    cargo test --release -p starbucks-hub --test huggingface_hub -- --ignored
which starts the loopback hub and runs this script in three modes:

    download <endpoint> <cache> <repo_type> <repo_id>   snapshot_download into <cache>; prints
                                                       {"snapshot": dir, "files": {path: sha256}}
    offline <cache> <repo_type> <repo_id>               the same with HF_HUB_OFFLINE (cache only)
    scan <cache>                                        scan_cache_dir: repos, refs, revisions
"""
import hashlib
import json
import os
import sys
from pathlib import Path


def files_of(snapshot):
    out = {}
    for path in sorted(Path(snapshot).rglob("*")):
        if path.is_file():
            out[path.relative_to(snapshot).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main():
    mode = sys.argv[1]
    if mode == "download":
        endpoint, cache, repo_type, repo_id = sys.argv[2:6]
        os.environ["HF_ENDPOINT"] = endpoint
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache, endpoint=endpoint)
        print(json.dumps({"snapshot": snapshot, "files": files_of(snapshot)}))
    elif mode == "offline":
        cache, repo_type, repo_id = sys.argv[2:5]
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache, local_files_only=True)
        print(json.dumps({"snapshot": snapshot, "files": files_of(snapshot)}))
    elif mode == "scan":
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(sys.argv[2])
        repos = []
        for repo in info.repos:
            revisions = [{"commit": r.commit_hash, "refs": sorted(r.refs), "files": sorted(f.file_name for f in r.files)} for r in repo.revisions]
            repos.append({"id": repo.repo_id, "type": repo.repo_type, "revisions": revisions})
        print(json.dumps({"repos": repos, "warnings": [str(w) for w in info.warnings]}))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
