#!/bin/bash
# build-initramfs.sh: fetch a Debian cloud kernel and build the busybox
# initramfs that test/vm/run.sh boots to drive extentd through the Linux
# kernel NBD client.
#
# Usage: test/vm/build-initramfs.sh [CACHE_DIR]
#
# Prints two lines on stdout: KERNEL=path and INITRD=path. Everything is
# cached in CACHE_DIR (default $EXTENTD_VM_CACHE, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/extentd-vm); the initramfs is rebuilt only
# when this script, init.sh or the kernel version change.
#
# Nothing is installed on the host: Debian packages are fetched with
# `apt-get download` and unpacked with `dpkg -x` into the cache. The guest
# tools (busybox-static, e2fsprogs, xfsprogs, fio) are taken from the host
# when present, else from downloaded packages; nbd-client always comes from
# its package, together with the shared libraries it needs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${EXTENTD_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/extentd-vm}}
mkdir -p "$cache/debs" "$cache/root"
log() { echo "build-initramfs: $*" >&2; }

# fetch PKG...: download the .deb files into $cache/debs (once) and unpack
# them into $cache/root.
fetch() {
	local p
	for p in "$@"; do
		if ! ls "$cache/debs/${p}"_*.deb >/dev/null 2>&1; then
			log "apt-get download $p"
			(cd "$cache/debs" && apt-get download "$p" >&2 2>/dev/null) ||
				(apt-get update >&2 && cd "$cache/debs" && apt-get download "$p" >&2)
		fi
		dpkg -x "$(ls "$cache/debs/${p}"_*.deb | head -1)" "$cache/root"
	done
}

# 1. The kernel: linux-image-cloud-amd64 depends on one versioned package.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' || true)
if [ -z "$kpkg" ]; then
	kpkg=$(cd "$cache/debs" && ls linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -1 | cut -d_ -f1 || true)
fi
if [ -z "$kpkg" ]; then
	apt-get update >&2
	kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
[ -n "$kpkg" ] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
kver=${kpkg#linux-image-}
fetch "$kpkg" nbd-client libnl-genl-3-200
moddir=$cache/root/lib/modules/$kver
kernel=$cache/root/boot/vmlinuz-$kver
[ -f "$kernel" ] || { log "missing $kernel"; exit 1; }

# 2. Guest tools: host binary when present, else the package's.
need_tool() { # need_tool BIN PKG: print the path of BIN
	local b=$1 p=$2 d
	for d in /usr/sbin /sbin /usr/bin /bin; do
		if [ -x "$d/$b" ]; then echo "$d/$b"; return; fi
	done
	fetch "$p"
	for d in usr/sbin sbin usr/bin bin; do
		if [ -x "$cache/root/$d/$b" ]; then echo "$cache/root/$d/$b"; return; fi
	done
	log "no $b (package $p)"
	exit 1
}
tools=(
	"$(need_tool busybox busybox-static)"
	"$(need_tool mke2fs e2fsprogs)"
	"$(need_tool e2fsck e2fsprogs)"
	"$(need_tool mkfs.xfs xfsprogs)"
	"$(need_tool xfs_repair xfsprogs)"
	"$(need_tool fio fio)"
	"$cache/root/sbin/nbd-client"
)
busybox=${tools[0]}
if ldd "$busybox" >/dev/null 2>&1; then
	log "$busybox is not static (install busybox-static)"
	exit 1
fi

# 3. Rebuild only when an input changed.
key=$( (cat "$here/build-initramfs.sh" "$here/init.sh"; echo "$kver"; ls -l "${tools[@]}") | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$key.cpio
if [ -f "$initrd" ]; then
	echo "KERNEL=$kernel"
	echo "INITRD=$initrd"
	exit 0
fi
log "building $initrd (kernel $kver)"

stage=$(mktemp -d "$cache/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,mnt,etc,lib/modules,lib64,run}
cp "$busybox" "$stage/bin/busybox"
for a in $("$busybox" --list); do
	[ -e "$stage/bin/$a" ] || ln -s busybox "$stage/bin/$a"
done
for t in "${tools[@]:1}"; do cp "$t" "$stage/sbin/"; done
ln -sf mke2fs "$stage/sbin/mkfs.ext2"
ln -sf mke2fs "$stage/sbin/mkfs.ext4"

# Shared libraries of every dynamic tool (ldd honours LD_LIBRARY_PATH, so
# libraries unpacked from packages, like libnl-genl, are found too).
libpath=$cache/root/lib/x86_64-linux-gnu:$cache/root/usr/lib/x86_64-linux-gnu
for t in "${tools[@]:1}"; do
	LD_LIBRARY_PATH=$libpath ldd "$t" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/lib/ {print $1}'
done | sort -u | while read -r lib; do
	if [ ! -e "$lib" ]; then log "missing library $lib"; exit 1; fi
	case "$lib" in
	*/ld-linux-x86-64.so.2) cp -L "$lib" "$stage/lib64/ld-linux-x86-64.so.2" ;;
	*) mkdir -p "$stage/lib"; cp -L "$lib" "$stage/lib/$(basename "$lib")" ;;
	esac
done
printf '/lib\n' >"$stage/etc/ld.so.conf"

# 4. Kernel modules and their dependencies, in load order. There is no
# modules.dep in the package (depmod makes it at install), so read each
# module's "depends=" field from its .modinfo section.
declare -A modpath loaded
while read -r f; do
	n=$(basename "$f" .ko)
	modpath[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko')
order=()
add_mod() {
	local n=${1//-/_} d deps
	[ -n "${loaded[$n]:-}" ] && return
	if [ -z "${modpath[$n]:-}" ]; then
		# Built into this kernel: nothing to load.
		if grep -q "/$n.ko\$" "$moddir/modules.builtin" 2>/dev/null || grep -q "/${n//_/-}.ko\$" "$moddir/modules.builtin"; then
			loaded[$n]=builtin
			return
		fi
		log "module $n neither in the package nor built in"
		exit 1
	fi
	deps=$(tr '\0' '\n' <"${modpath[$n]}" | sed -n 's/^depends=//p' | head -1)
	for d in ${deps//,/ }; do add_mod "$d"; done
	loaded[$n]=1
	order+=("$n")
}
for m in virtio_pci virtio_net nbd ext4 xfs; do add_mod "$m"; done
for n in "${order[@]}"; do cp "${modpath[$n]}" "$stage/lib/modules/$n.ko"; done
printf '%s\n' "${order[@]}" >"$stage/lib/modules/load-order"
log "modules: ${order[*]}"

cp "$here/init.sh" "$stage/init"
chmod 755 "$stage/init"

# Uncompressed cpio: larger on disk, but the kernel unpacks it fastest
# under software emulation.
(cd "$stage" && find . | "$busybox" cpio -o -H newc) >"$initrd.tmp" 2>/dev/null
mv "$initrd.tmp" "$initrd"
# Keep only the newest initramfs.
find "$cache" -maxdepth 1 -name 'initramfs-*.cpio' ! -name "$(basename "$initrd")" -delete
echo "KERNEL=$kernel"
echo "INITRD=$initrd"
