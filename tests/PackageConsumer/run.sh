#!/usr/bin/env bash
# Packs the repository's packages into $1 (a folder), then builds and runs this consumer against the core package
# from that folder alone, checks the core pulled in neither FsCheck/FSharp.Core nor ILGPU, and installs and runs the
# bench tool. Prints one line per
# check: "package: ok ..." or "package: FAILED ..."; exits nonzero on any failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
packages="$(mkdir -p "$1" && cd "$1" && pwd)"
failed=0

if ! dotnet pack "$root/Engine.sln" -c Release -o "$packages" --nologo -v quiet > "$packages/pack.log" 2>&1; then
  echo "package: FAILED dotnet pack"; tail -n 30 "$packages/pack.log"; exit 1
fi
core=$(ls "$packages"/AttentionEngine.[0-9]*.nupkg | head -n 1)
version=$(basename "$core" .nupkg); version=${version#AttentionEngine.}
for id in AttentionEngine AttentionEngine.Testing AttentionEngine.IlGpu AttentionEngine.Bench; do
  if [ -f "$packages/$id.$version.nupkg" ] && [ -f "$packages/$id.$version.snupkg" ]; then
    echo "package: ok $id $version (with symbols)"
  else
    echo "package: FAILED $id $version or its .snupkg is missing"; failed=1
  fi
done
for extra in "$packages"/AttentionEngine.Kernels.*.nupkg "$packages"/AttentionEngine.Bindings.*.nupkg "$packages"/AttentionEngine.Tests.*.nupkg; do
  [ -e "$extra" ] && { echo "package: FAILED $(basename "$extra") should not be a package"; failed=1; }
done

# A clean consumer: its own obj/, the local folder as an extra source, a private package cache for our packages.
rm -rf "$here/obj" "$here/bin"
export NUGET_PACKAGES="$packages/cache"
if dotnet run --project "$here/PackageConsumer.csproj" -c Release -p:AttentionEngineVersion="$version" \
     -p:RestoreAdditionalProjectSources="$packages" > "$packages/consumer.log" 2>&1; then
  echo "package: ok $(tail -n 1 "$packages/consumer.log")"
else
  echo "package: FAILED the consumer did not build or run"; tail -n 30 "$packages/consumer.log"; failed=1
fi
if grep -qiE '"(FsCheck|FSharp\.Core|ILGPU|ILGPU\.Algorithms)/' "$here/obj/project.assets.json" 2>/dev/null; then
  echo "package: FAILED the core package pulls in $(grep -oiE '"(FsCheck|FSharp\.Core|ILGPU|ILGPU\.Algorithms)/[^"]*' "$here/obj/project.assets.json" | sort -u | tr -d '"' | tr '\n' ' ')"; failed=1
elif [ -f "$here/obj/project.assets.json" ]; then
  echo "package: ok the core package pulls in only $(grep -oE '"[A-Za-z.]+/[0-9][^"]*": \{' "$here/obj/project.assets.json" | grep -oE '^"[^/]+' | tr -d '"' | sort -u | tr '\n' ' ')"
fi
rm -rf "$here/obj" "$here/bin"

# The bench tool installs from the folder and runs.
if dotnet tool install --tool-path "$packages/tool" --add-source "$packages" AttentionEngine.Bench --version "$version" > "$packages/tool.log" 2>&1 \
   && "$packages/tool/attention-bench" verify --cases 3 >> "$packages/tool.log" 2>&1; then
  echo "package: ok dotnet tool install AttentionEngine.Bench; attention-bench verify --cases 3 passed"
else
  echo "package: FAILED the bench tool did not install or run"; tail -n 20 "$packages/tool.log"; failed=1
fi
exit $failed
