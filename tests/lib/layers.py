#!/usr/bin/env python3
"""Checks that the tree keeps the layering of docs/architecture.md ("Build targets").

Every source file of common/ belongs to exactly one layer (the add_library lists of
common/CMakeLists.txt, plus the header-only files below), and may include the headers of its
own layer and of the layers below it only. The sans-io layer (strelay_core) includes no Asio.
strelay/ (the relay) may not include the node library, and stmgr/ only file formats.
Prints one line per violation and exits 1 when there is any.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
order = ["strelay_core", "strelay_files", "strelay_log", "strelay_net", "strelay_node"]
# Which lower layers each layer may use (files and log both sit on core only).
allowed = {
    "strelay_core": {"strelay_core"},
    "strelay_files": {"strelay_core", "strelay_files"},
    "strelay_log": {"strelay_core", "strelay_log"},
    "strelay_net": {"strelay_core", "strelay_net"},
    "strelay_node": set(order),
}
header_only = {
    "protocol.hpp": "strelay_core", "secure.hpp": "strelay_core", "clock.hpp": "strelay_core",
    "recent_set.hpp": "strelay_core",
    "coro.hpp": "strelay_net", "wakeup.hpp": "strelay_net",
}

cmake = (root / "common/CMakeLists.txt").read_text()
layer_of = {}
for name, body in re.findall(r"add_library\((strelay_\w+) STATIC([^)]*)\)", cmake):
    for src in body.split():
        layer_of[src] = name
        layer_of[src.replace(".cpp", ".hpp")] = name
for header, name in header_only.items():
    layer_of[header] = name

problems = []
for path in sorted((root / "common").iterdir()):
    if path.suffix in (".cpp", ".hpp") and path.name not in layer_of:
        problems.append(f"common/{path.name}: in no layer (add it to common/CMakeLists.txt)")


def includes(path):
    return re.findall(r'^#include ["<]([^">]+)[">]', path.read_text(), re.M)


for path in sorted((root / "common").glob("*.[ch]pp")):
    layer = layer_of.get(path.name)
    if layer is None:
        continue
    for inc in includes(path):
        if inc.startswith("boost/asio") and layer in ("strelay_core", "strelay_files", "strelay_log"):
            problems.append(f"common/{path.name}: {layer} is sans-io but includes <{inc}>")
        if inc.startswith("common/"):
            target = layer_of.get(inc[len("common/"):])
            if target is not None and target not in allowed[layer]:
                problems.append(f"common/{path.name} ({layer}) includes {inc} ({target})")

rules = {"strelay": {"strelay_core", "strelay_files", "strelay_log", "strelay_net"},
         "stmgr": {"strelay_core", "strelay_files"}}
for folder, may in rules.items():
    for path in sorted((root / folder).glob("*.[ch]pp")):
        for inc in includes(path):
            if inc.startswith("common/"):
                target = layer_of.get(inc[len("common/"):])
                if target is not None and target not in may:
                    problems.append(f"{folder}/{path.name} includes {inc} ({target})")

for line in problems:
    print(line)
print(f"layers: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
