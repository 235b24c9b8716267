"""What a step wrote into the run folder, whether it declared it or not.

The folder's files are listed (size, modification time, inode: one ``stat`` each, no reading)
when the step starts and when it ends; a file that is new or changed in between was written
while the step ran. nbmill's own files (run.json, notebooks/, html/, metrics/, ...) and hidden
files do not count. A step's writes that its outputs do not declare keep it out of the cache,
since a hit could not restore them.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbmill.records.runjson import is_record_file

Listing = dict[str, tuple[int, int, int]]  # relative POSIX path -> (size, mtime_ns, inode)


def listing(run_dir: Path) -> Listing:
    """Every file in the run folder that a step may have written."""
    found: Listing = {}
    stack = [(str(run_dir), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            if is_record_file(rel):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel + "/"))
            elif entry.is_file():
                stat = entry.stat()
                found[rel] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return found


def written_since(before: Listing, run_dir: Path) -> list[str]:
    """The files new or changed in the run folder since ``before`` was listed, sorted."""
    after = listing(run_dir)
    return sorted(rel for rel, stamp in after.items() if before.get(rel) != stamp)
