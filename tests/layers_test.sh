#!/usr/bin/env bash
# The build targets' layering (docs/architecture.md, "Build targets"): every common/ file is in
# one layer, includes only its own and lower layers, and the sans-io core includes no Asio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python3 "$root/tests/lib/layers.py" "$root"
# The checker must be able to fail: a copy of the tree where the core includes Asio.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/common" "$scratch/strelay" "$scratch/stmgr"
cp "$root"/common/* "$scratch/common/"
sed -i '1i #include <boost/asio/post.hpp>' "$scratch/common/frame.cpp"
touch "$scratch/common/stray.cpp"
if out=$(python3 "$root/tests/lib/layers.py" "$scratch"); then
  echo "layers_test: the checker accepted a core file that includes Asio" >&2
  exit 1
fi
grep -q "common/frame.cpp: strelay_core is sans-io" <<<"$out" || { echo "$out" >&2; exit 1; }
grep -q "common/stray.cpp: in no layer" <<<"$out" || { echo "$out" >&2; exit 1; }
echo "layers_test: ok"
