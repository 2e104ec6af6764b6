#!/usr/bin/env bash
# Regenerates Sources/RPC/Generated from Protos/.
#
# Uses protoc from Debian's protobuf-compiler (checked with 3.21.12) and the two plugins built
# from this package's dependencies: protoc-gen-swift (swift-protobuf) and protoc-gen-grpc-swift-2
# (grpc-swift-protobuf). Run it after changing a .proto file and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
    echo "protoc not found: apt-get install -y protobuf-compiler" >&2
    exit 1
fi

swift build --product protoc-gen-swift >&2
swift build --product protoc-gen-grpc-swift-2 >&2
bin="$(swift build --show-bin-path)"

out=Sources/RPC/Generated
rm -rf "$out"
mkdir -p "$out"
protoc \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
    --proto_path=Protos \
    --swift_opt=Visibility=Public,UseAccessLevelOnImports=true \
    --swift_out="$out" \
    --grpc-swift-2_opt=Visibility=Public,UseAccessLevelOnImports=true \
    --grpc-swift-2_out="$out" \
    Protos/aspire/v1/*.proto
# protoc-gen-grpc-swift-2 2.4.1 does not escape an RPC named like a Swift keyword: the
# Bootstrap.Init method comes out as `func init(`, which does not compile. Escape it (the wire
# name stays "Init"): method declarations, and calls made on the method through `await`.
for file in "$out"/aspire/v1/*.grpc.swift; do
    sed -i -E \
        -e 's/func init([(<])/func `init`\1/g' \
        -e 's/await self\.init\(/await self.`init`(/g' \
        "$file"
    if grep -nE 'func init[(<]|await self\.init\(' "$file"; then
        echo "unescaped keyword left in $file" >&2
        exit 1
    fi
done
# The services the REST gateway calls in its own process, reached without a transport.
python3 scripts/generate-direct-clients.py "$out/aspire/v1/admin.grpc.swift" "$out/aspire/v1/admin.direct.swift" Aspire_V1_Admin
python3 scripts/generate-direct-clients.py "$out/aspire/v1/agent.grpc.swift" "$out/aspire/v1/agent.direct.swift" \
    Aspire_V1_AgentPoll Aspire_V1_PackageStore
echo "generated: $(find "$out" -name '*.swift' | sort | tr '\n' ' ')"
