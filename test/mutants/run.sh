#!/bin/bash
# Deliberate breakages, each of which a unit test must catch.
#
# Every test/mutants/NAME.patch is one small change to a rule the unit
# tests cover (its first line says which rule). This applies each in turn
# to a scratch copy of the tree (never to the working tree), rebuilds only
# what changed, runs `make unit` there, and expects a unit test to fail.
# A mutant that builds and passes every unit test "survived": the rule it
# breaks is not tested, and this script exits 1. A mutant that does not
# apply or does not compile is an error too (the patch needs refreshing).
#
# usage: test/mutants/run.sh BUILD_DIR [NAME...]   (make mutants runs it
# after `make unit`, so the copied objects are fresh; SANITIZE is passed on)
set -u
build=${1:?usage: run.sh BUILD_DIR [NAME...]}
shift
top=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$top/$build/mutants
tree=$scratch/tree

rm -rf "$tree"
mkdir -p "$tree/$build"
# The sources as they are now (tracked or not) and the build's objects,
# timestamps kept, so a mutant recompiles only the file it changes.
(cd "$top" && tar -cf - Makefile lib fs probe recover test) | tar -xf - -C "$tree" || exit 2
(cd "$top/$build" && tar -cf - $(ls -d obj unit libsteadyfs.a ks-corrupt .flags .deps-ok \
	2>/dev/null)) | tar -xf - -C "$tree/$build" || exit 2

if [ $# -eq 0 ]; then
	set -- $(cd "$top/test/mutants" && ls *.patch | sed 's/\.patch$//')
fi
killed=0; bad=0
for name in "$@"; do
	p=$top/test/mutants/$name.patch
	log=$scratch/$name.log
	if ! (cd "$tree" && patch -s -p1 --no-backup-if-mismatch < "$p") >"$log" 2>&1; then
		echo "mutant $name: does not apply (see $log)"; bad=$((bad + 1)); continue
	fi
	make -C "$tree" --no-print-directory SANITIZE="${SANITIZE:-0}" unit >>"$log" 2>&1
	rc=$?
	failed=$(grep -o '^FAILED: .*' "$log" | sed 's|.*/||' | tr '\n' ' ')
	if [ $rc -ne 0 ] && [ -n "$failed" ]; then
		echo "mutant $name: killed by $failed($(head -1 "$p"))"
		killed=$((killed + 1))
	elif [ $rc -ne 0 ]; then
		echo "mutant $name: does not build (see $log)"; bad=$((bad + 1))
	else
		echo "mutant $name: SURVIVED: no unit test failed ($(head -1 "$p"))"
		bad=$((bad + 1))
	fi
	(cd "$tree" && patch -s -R -p1 --no-backup-if-mismatch < "$p") >>"$log" 2>&1 || {
		echo "mutant $name: cannot be undone in $tree"; exit 2; }
done
echo "mutants: $killed killed, $bad survived or broken"
[ $bad -eq 0 ]
