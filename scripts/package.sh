#!/usr/bin/env bash
# Builds the installable packages: aspire-boot (the agent: boot, BasicAgentCtl) and
# aspire-server (aspire-server, aspirectl), each as a .deb (dpkg-deb) and an .rpm (rpmbuild,
# from Debian's rpm package, when present), with their systemd unit, /etc/aspire
# configuration file, man pages and aspirectl's shell completions.
#
# The binaries are linked with the Swift runtime inside (--static-swift-stdlib), so they run on
# hosts without Swift: they need only the C library. They are stripped; their debug
# information is kept aside in OUT/debug (objcopy --add-gnu-debuglink).
#
#   scripts/package.sh [--debug] [--version V] [--out DIR] [--from DIR] [--no-rpm]
#
# --debug packages the debug build (quick: the tests use it); the default is a release build.
# --version sets the packages' version (default: the binaries' own, boot --version).
# --from DIR packages the binaries and man pages of an earlier run's OUT instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."

configuration=release
version=""
out="$(pwd)/.build/packages"
rpm=yes
from=""
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) configuration=debug ;;
        --version) version="$2"; shift ;;
        --out) out="$2"; shift ;;
        --from) from="$(cd "$2" && pwd)"; shift ;;
        --no-rpm) rpm=no ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# package NAME: what the package is, for the staging, the .deb and the .rpm alike — its
# binaries, set-up script, unit, configuration file (mode and group as its set-up script leaves
# them), the packages it needs beyond the runtimes, its summary and the rpm's %pre.
package() {
    name="$1"
    unit="$name.service"
    pre=""
    case "$name" in
        aspire-boot)
            binaries_of=(boot BasicAgentCtl)
            setup=boot config=boot.conf config_mode=0600 config_group=root
            # What the agent runs its work with (seed 004's required tools), and the time zone
            # database its schedules are read in.
            requires="bash, tar, gzip, tzdata"
            summary="Aspire BootAgent: runs an Aspire server's commands and sub-agents on this host"
            ;;
        aspire-server)
            binaries_of=(aspire-server aspirectl)
            setup=server config=server.conf config_mode=0640 config_group=aspire
            # Schedules' time zones are read from the host's database (/usr/share/zoneinfo).
            requires="tzdata"
            summary="Aspire server node, REST gateway and web console, with aspirectl"
            # The aspire group must exist before its file is given to it.
            pre="getent group aspire >/dev/null || groupadd --system aspire"
            ;;
    esac
}
packages=(aspire-boot aspire-server)
# The binaries to build: every package's.
products=()
for package_name in "${packages[@]}"; do
    package "$package_name"
    products+=("${binaries_of[@]}")
done

binaries="$out/bin"
manuals="$out/man"
if [ -n "$from" ]; then
    binaries="$from/bin"
    manuals="$from/man"
else
    # Its own build folder: objects compiled for the static runtime name other libraries
    # than those of the ordinary build (.build, the tests'), and the two must not mix.
    scratch=.build-package
    echo "== binaries ($configuration, Swift runtime linked in, in $scratch)"
    for product in "${products[@]}"; do
        swift build --scratch-path "$scratch" -c "$configuration" --static-swift-stdlib --product "$product"
    done
    bin="$(swift build --scratch-path "$scratch" -c "$configuration" --show-bin-path)"

    echo "== man pages (argument-parser's generate-manual, reading each binary's options)"
    swift build --package-path "$scratch/checkouts/swift-argument-parser" --scratch-path "$scratch/generate-manual" \
        --product generate-manual >/dev/null
    rm -rf "$manuals"
    mkdir -p "$manuals"
    for product in "${products[@]}"; do
        "$scratch/generate-manual/debug/generate-manual" "$bin/$product" --output-directory "$manuals" \
            --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" --authors "The Aspire developers"
    done

    mkdir -p "$binaries" "$out/debug"
    for product in "${products[@]}"; do
        objcopy --only-keep-debug "$bin/$product" "$out/debug/$product.debug"
        objcopy --strip-all --add-gnu-debuglink="$out/debug/$product.debug" "$bin/$product" "$binaries/$product"
        # Nothing of the toolchain may be needed at run time.
        if ldd "$binaries/$product" | grep -q "/swift\|libswift\|libFoundation\|libdispatch"; then
            echo "package.sh: $product still links the Swift runtime dynamically:" >&2
            ldd "$binaries/$product" >&2
            exit 1
        fi
    done
fi
version="${version:-$("$binaries/boot" --version)}"
architecture="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
case "$architecture" in
    amd64) rpm_architecture=x86_64 ;;
    arm64) rpm_architecture=aarch64 ;;
    *) rpm_architecture="$architecture" ;;
esac


# stage NAME: the package's files under $out/stage/NAME.
stage() {
    package "$1"
    local root="$out/stage/$name"
    rm -rf "$root"
    install -d "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/usr/lib/aspire" "$root/etc/aspire" \
        "$root/usr/share/man/man1" "$root/usr/share/doc/$name"
    for binary in "${binaries_of[@]}"; do
        install -m 0755 "$binaries/$binary" "$root/usr/bin/$binary"
        for page in "$manuals/$binary".1 "$manuals/$binary".*.1; do
            [ -e "$page" ] || continue
            gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
        done
    done
    install -m 0644 "packaging/systemd/$unit" "$root/usr/lib/systemd/system/$unit"
    install -m 0755 "packaging/scripts/setup-$setup" "$root/usr/lib/aspire/setup-$setup"
    install -m 0600 "packaging/etc/$config" "$root/etc/aspire/$config"
    install -m 0644 README.md "$root/usr/share/doc/$name/README.md"
}

echo "== staging"
for name in "${packages[@]}"; do stage "$name"; done
completions="$out/stage/aspire-server"
install -d "$completions/usr/share/bash-completion/completions" "$completions/usr/share/zsh/vendor-completions" \
    "$completions/usr/share/fish/vendor_completions.d"
"$binaries/aspirectl" --generate-completion-script bash > "$completions/usr/share/bash-completion/completions/aspirectl"
"$binaries/aspirectl" --generate-completion-script zsh > "$completions/usr/share/zsh/vendor-completions/_aspirectl"
"$binaries/aspirectl" --generate-completion-script fish > "$completions/usr/share/fish/vendor_completions.d/aspirectl.fish"

echo "== .deb (dpkg-deb)"
if [ "$configuration" = release ]; then compression=(-Zxz); else compression=(-Zgzip -z1); fi
for package_name in "${packages[@]}"; do
    package "$package_name"
    root="$out/stage/$name"
    deb="$out/stage/$name.deb-root"
    rm -rf "$deb"
    cp -a "$root" "$deb"
    install -d "$deb/DEBIAN"
    # The C and C++ runtimes and zlib: all the static binaries link dynamically (ldd shows it).
    depends="libc6 (>= 2.31), libstdc++6, libgcc-s1, zlib1g"
    [ -n "$requires" ] && depends="$depends, $requires"
    cat > "$deb/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $architecture
Maintainer: The Aspire developers <aspire@localhost>
Depends: $depends
Section: admin
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: $summary
 Aspire manages the agents that run on a fleet of Linux hosts.
EOF
    echo "/etc/aspire/$config" > "$deb/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        sed -e "s/@SETUP@/$setup/g" -e "s/@UNIT@/$unit/g" "packaging/scripts/deb-$script" > "$deb/DEBIAN/$script"
        chmod 0755 "$deb/DEBIAN/$script"
    done
    dpkg-deb --root-owner-group "${compression[@]}" --build "$deb" "$out/${name}_${version}_${architecture}.deb" >/dev/null
    echo "$out/${name}_${version}_${architecture}.deb"
done

if [ "$rpm" = yes ] && command -v rpmbuild >/dev/null 2>&1; then
    echo "== .rpm (rpmbuild)"
    if [ "$configuration" = release ]; then payload=w6.xzdio; else payload=w1.gzdio; fi
    for package_name in "${packages[@]}"; do
        package "$package_name"
        top="$out/stage/$name.rpm-top"
        rm -rf "$top"
        mkdir -p "$top/SPECS"
        {
            echo "Name: $name"
            echo "Version: ${version//-/_}"
            echo "Release: 1"
            echo "Summary: $summary"
            echo "License: Proprietary"
            echo "BuildArch: $rpm_architecture"
            echo "AutoReqProv: no"
            echo "Requires: glibc, libstdc++, zlib${requires:+, $requires}"
            echo "%define debug_package %{nil}"
            echo "%define __os_install_post %{nil}"
            echo "%define _binary_payload $payload"
            echo "%description"
            echo "Aspire manages the agents that run on a fleet of Linux hosts."
            echo "%install"
            echo "cp -a '$out/stage/$name/.' %{buildroot}/"
            echo "%files"
            (cd "$out/stage/$name" && find . -type f ! -path "./etc/*" | sed 's|^\.||' | sort)
            echo "%config(noreplace) %attr($config_mode,root,$config_group) /etc/aspire/$config"
            echo "%dir /etc/aspire"
            [ -n "$pre" ] && printf '%%pre\n%s\n' "$pre"
            echo "%post"
            echo "/usr/lib/aspire/setup-$setup"
            echo "if [ -d /run/systemd/system ]; then"
            echo "    systemctl daemon-reload >/dev/null || :"
            echo "    if [ \$1 -eq 1 ]; then systemctl enable $unit >/dev/null || :; systemctl start $unit || :; else systemctl try-restart $unit || :; fi"
            echo "fi"
            echo "%preun"
            echo "if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then systemctl disable --now $unit >/dev/null || :; fi"
            echo "%postun"
            echo "if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || :; fi"
        } > "$top/SPECS/$name.spec"
        rpmbuild -bb --nodeps --quiet --define "_topdir $top" --define "_rpmdir $out" --define "_build_id_links none" \
            "$top/SPECS/$name.spec" >/dev/null
        ls "$out/$rpm_architecture/$name-${version//-/_}-1.$rpm_architecture.rpm"
    done
elif [ "$rpm" = yes ]; then
    echo "rpmbuild missing (Debian's rpm package): no .rpm" >&2
fi
