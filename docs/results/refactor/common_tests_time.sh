#!/usr/bin/env bash
# Times the tests that existed before issue 16's work (d7251d8^, the last commit with attacks/cli.py)
# and still exist under the same ids, in the old tree and in this one, one after the other.
# Run from the repository root with nothing else on the machine; ../shared must sit beside both trees.
set -euo pipefail
before=${1:-/tmp/wt_before}
[ -d "$before" ] || git worktree add -q "$before" d7251d8^
[ -e "$(dirname "$before")/shared" ] || ln -s "$(cd .. && pwd)/shared" "$(dirname "$before")/shared"
ids() { python -m pytest --collect-only -q -p no:cacheprovider 2>/dev/null | grep '::' | sort; }
(cd "$before" && PYTHONPATH="$before/src" ids) > /tmp/ids_before.txt
ids > /tmp/ids_after.txt
comm -12 /tmp/ids_before.txt /tmp/ids_after.txt > /tmp/common_ids.txt
echo "$(wc -l < /tmp/ids_before.txt) tests before, $(wc -l < /tmp/common_ids.txt) of them still here"
run='import sys, pytest; sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *open("/tmp/common_ids.txt").read().split("\n")[:-1]]))'
echo "this tree:";   python -c "$run" | tail -1
echo "before:";      (cd "$before" && PYTHONPATH="$before/src" python -c "$run" | tail -1)
echo "this tree:";   python -c "$run" | tail -1
