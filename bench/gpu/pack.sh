#!/usr/bin/env bash
# Packs what bench/gpu/session.sh needs on a GPU machine that has no .NET into .device/ (git-ignored), within the
# device tool's 64 MiB for the whole working tree: this machine's .NET runtime and Release publishes of the tests and
# bench, as one xz archive (.device/payload.tar.xz) that session.sh unpacks there.
# The apps lose the native libraries the CUDA checks never load (ONNX Runtime, Skia, HarfBuzz, capstone: 60+ MB) and
# share their identical files through hard links, which tar stores once.
# Usage (from anywhere in the checkout): bash bench/gpu/pack.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
rtv=$(basename "$(ls -d "$dn"/shared/Microsoft.NETCore.App/*/ | sort -V | tail -1)")
mkdir -p "$stage/dotnet/shared/Microsoft.NETCore.App"
cp -a "$dn/dotnet" "$dn/host" "$stage/dotnet/"
cp -a "$dn/shared/Microsoft.NETCore.App/$rtv" "$stage/dotnet/shared/Microsoft.NETCore.App/"
# xunit v3 test projects must keep their app host; run as `dotnet <name>.dll` there either way.
dotnet publish tests/AttentionEngine.Tests.csproj -c Release -r linux-x64 --self-contained false -o "$stage/apps/AttentionEngine.Tests" >/dev/null
dotnet publish bench/AttentionEngine.Bench.csproj -c Release -r linux-x64 --self-contained false -o "$stage/apps/AttentionEngine.Bench" -p:UseAppHost=false >/dev/null
find "$stage/apps" \( -name 'libonnxruntime*.so' -o -name 'onnxruntime*.dll' -o -name 'libSkiaSharp.so' -o -name 'libHarfBuzzSharp.so' \
  -o -name 'libcapstone.so' -o -name '*.pdb' \) -delete
(cd "$stage/apps/AttentionEngine.Tests" && find . -type f | while read -r f; do
  other="../AttentionEngine.Bench/$f"
  if [ -f "$other" ] && cmp -s "$f" "$other"; then ln -f "$other" "$f"; fi
done)
mkdir -p .device
grep -qx '/.device/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.device/' >> .git/info/exclude; }
rm -rf .device/apps .device/dotnet.tgz .device/payload.tar.xz
XZ_OPT='-9 -T0' tar cJf .device/payload.tar.xz -C "$stage" dotnet apps
du -sh .device/payload.tar.xz | awk '{print "packed .device/payload.tar.xz: " $1 " (the device call carries at most 64 MiB with the checkout)"}'
