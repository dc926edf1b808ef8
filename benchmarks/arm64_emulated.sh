#!/usr/bin/env bash
# Prove the runtime-only install on arm64 (aarch64) on an x86 Linux host, through emulation.
#
# 1. debootstrap a minimal Debian bookworm arm64 root (Debian's python3 + python3-venv) in a work folder;
#    the foreign binaries run through qemu-user-static registered with binfmt_misc.
# 2. Copy this repository's working tree into it and `pip install` it (the base install, no extras) in a venv
#    there: pip fetches the aarch64 wheels (numpy, Pillow, ai-edge-litert, ...).
# 3. Inside the arm64 root: `edgedetect predict imgs/real --json` with every shipped model, and
#    `edgedetect bench models/*.tflite --data <small CIFAKE test subset> --json` (every file of models/, as on x86).
# 4. The same on this x86 host (the python given by EDGEDETECT_X86_PYTHON, default: python3 with edgedetect
#    importable), then compare labels and p_fake per image and model, and accuracy per bench row.
#
# Emulated speed says nothing about a real Pi: the timings printed by bench inside qemu are not Pi timings.
#
# Needs: root, and Debian's debootstrap, qemu-user-static and binfmt-support:
#     apt-get update && apt-get install -y debootstrap qemu-user-static binfmt-support
# Usage: bash benchmarks/arm64_emulated.sh            (about 30-60 minutes the first time, mostly pip under qemu)
# Env:   EDGEDETECT_ARM64_ROOT  work folder (default ${TMPDIR:-/tmp}/edgedetect-arm64; kept between runs,
#                               the Debian root is built once, the venv is rebuilt every run)
#        EDGEDETECT_X86_PYTHON  python with edgedetect installed on this host (default: python3)
#        CIFAKE_TEST            tarball to take the subset from (default: ../shared/data/cifake-test.tar.gz)
#        N_PER_CLASS            images per class in the subset (default 100)
#        ARM64_CPU              the emulated core: cortex-a76 (Raspberry Pi 5, int8 dot product; default) or
#                               cortex-a72 (Raspberry Pi 4, NEON without dot product)
# Exit:  0 the arm64 install works and agrees with x86; 1 it disagrees; 2 setup failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${EDGEDETECT_ARM64_ROOT:-${TMPDIR:-/tmp}/edgedetect-arm64}"
root="$work/rootfs"
x86_python="${EDGEDETECT_X86_PYTHON:-python3}"
cifake="${CIFAKE_TEST:-$repo/../shared/data/cifake-test.tar.gz}"
n_per_class="${N_PER_CLASS:-100}"
arm_cpu="${ARM64_CPU:-cortex-a76}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

say() { printf '[arm64 %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "error: $*" >&2; exit 2; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap qemu-aarch64-static; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y debootstrap qemu-user-static binfmt-support"
done
[[ -f "$cifake" ]] || die "$cifake not found; set CIFAKE_TEST to the CIFAKE test tarball"
"$x86_python" -c "import edgedetect" 2>/dev/null \
    || die "$x86_python cannot import edgedetect; set EDGEDETECT_X86_PYTHON to a python that has it installed"

# binfmt_misc lets the kernel hand aarch64 binaries to qemu, so chroot and debootstrap's second stage just work.
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    [[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (a container without it cannot run foreign binaries through chroot)"
    update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
fi
say "binfmt: $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64)"

mkdir -p "$work"
if [[ ! -f "$work/.rootfs-done" ]]; then
    say "debootstrap bookworm arm64 into $root (minbase + python3-venv)"
    rm -rf "$root"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$mirror" || die "debootstrap failed (log: $root/debootstrap/debootstrap.log)"
    touch "$work/.rootfs-done"
fi
[[ $(chroot "$root" dpkg --print-architecture) == arm64 ]] || die "$root is not an arm64 root"
say "arm64 root: $(chroot "$root" uname -m), $(chroot "$root" python3 --version)"

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc dev sys; do
    mountpoint -q "$root/$fs" || { mount --bind "/$fs" "$root/$fs"; mounted+=("$root/$fs"); }
done
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# Where this host reaches the package index through a TLS proxy, its CA bundle must travel into the root too.
host_ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
chroot_env=(/usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8)
if [[ -f "$host_ca" ]]; then
    cp -L "$host_ca" "$root/opt/host-ca.crt"
    chroot_env+=(PIP_CERT=/opt/host-ca.crt)
fi
# The emulated CPU is a real Pi core, set through QEMU_CPU, and the arm64 programs see a /proc/cpuinfo that
# matches it, bound over the real one in a private mount namespace that the host never sees. Both matter:
# - qemu-user (7.2, Debian bookworm's) shows the guest the host's x86 /proc/cpuinfo, and the CPU detection in
#   LiteRT (cpuinfo, used by XNNPACK and ruy) crashes on it: `Interpreter(...)` dies with SIGSEGV;
# - under qemu's default CPU, "max" (every optional Armv8/v9 feature: SVE2, SME, i8mm, ...), the int8 models
#   gave wrong p_fake here (fp32 ones were right to 1e-7): an emulation artefact or a kernel for those features,
#   which this host cannot tell apart; a Pi has none of them.
case "$arm_cpu" in
    cortex-a76) part=0xd0b variant=0x4 features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
    cortex-a72) part=0xd08 variant=0x0 features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid" ;;
    *) die "ARM64_CPU=$arm_cpu: use cortex-a76 (Raspberry Pi 5) or cortex-a72 (Raspberry Pi 4)" ;;
esac
cpuinfo="$work/cpuinfo-$arm_cpu"
for i in 0 1; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: 1\n\n' \
        "$i" "$features" "$variant" "$part"
done > "$cpuinfo"
chroot_env+=(QEMU_CPU="$arm_cpu")
in_root() {  # in_root COMMAND...: run COMMAND in the arm64 root, with the clean environment and the arm64 cpuinfo
    unshare --mount --propagation private bash -c 'mount --bind "$1" "$2/proc/cpuinfo" && shift 2 && exec chroot "$@"' \
        _ "$cpuinfo" "$root" "$root" "${chroot_env[@]}" "$@"
}

say "copy the working tree (no .git, no build output) to /opt/edgedetect-src"
rm -rf "$root/opt/edgedetect-src" "$root/opt/venv" "$root/opt/out"
mkdir -p "$root/opt/edgedetect-src" "$root/opt/out"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -P {} "$root/opt/edgedetect-src/")

say "subset: $n_per_class REAL + $n_per_class FAKE images of $(basename "$cifake")"
"$x86_python" - "$cifake" "$root/opt/cifake-small" "$n_per_class" <<'EOF'
import shutil, sys, tarfile
from pathlib import Path
src, dst, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
shutil.rmtree(dst, ignore_errors=True)
taken = {"REAL": 0, "FAKE": 0}
with tarfile.open(src) as tar:
    for m in tar:
        parts = Path(m.name).parts
        cls = next((p for p in parts if p in taken), None)
        if not m.isfile() or cls is None or taken[cls] >= n or not m.name.lower().endswith((".jpg", ".png")):
            continue
        out = dst / cls / Path(m.name).name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(tar.extractfile(m).read())
        taken[cls] += 1
        if all(v >= n for v in taken.values()):
            break
print(taken)
EOF

say "python3 -m venv + pip install /opt/edgedetect-src (base install, aarch64 wheels from the package index)"
in_root bash -c '
    set -e
    python3 -m venv /opt/venv
    /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --upgrade pip  # as docs/raspberry-pi.md
    /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir /opt/edgedetect-src
    /opt/venv/bin/pip list --format=freeze > /opt/out/pip-freeze.txt
    du -sm "$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])")" | cut -f1 > /opt/out/site-packages-mb.txt
' || die "pip install inside the arm64 root failed"
say "installed: $(grep -iE '^(edgedetect|numpy|pillow|ai-edge-litert)=' "$root/opt/out/pip-freeze.txt" | tr '\n' ' ')"
say "site-packages: $(cat "$root/opt/out/site-packages-mb.txt") MB"

models=$(cd "$repo/models" && ls *.tflite)
run_side() {  # $1 = arm64|x86; writes $out/<side>/predict_<model>.json, bench.json, predict_stderr_<model>.txt
    local side=$1 out="$work/out/$1" m
    rm -rf "$out"; mkdir -p "$out"
    for m in $models; do
        if [[ $side == arm64 ]]; then
            in_root bash -c \
                "cd /opt/edgedetect-src && edgedetect predict imgs/real /opt/cifake-small --model models/$m --json" \
                > "$out/predict_$m.json" 2> "$out/predict_stderr_$m.txt" || echo "exit $?" >> "$out/predict_stderr_$m.txt"
        else
            (cd "$repo" && "$x86_python" -m edgedetect predict imgs/real "$root/opt/cifake-small" \
                --model "models/$m" --json) > "$out/predict_$m.json" 2> "$out/predict_stderr_$m.txt" || echo "exit $?" >> "$out/predict_stderr_$m.txt"
        fi
    done
    if [[ $side == arm64 ]]; then
        in_root bash -c \
            "cd /opt/edgedetect-src && edgedetect bench models/*.tflite --data /opt/cifake-small --runs 10 --warmup 2 --json" \
            > "$out/bench.json" 2> "$out/bench_stderr.txt" || echo "exit $?" >> "$out/bench_stderr.txt"
    else
        (cd "$repo" && "$x86_python" -m edgedetect bench models/*.tflite --data "$root/opt/cifake-small" \
            --runs 10 --warmup 2 --json) > "$out/bench.json" 2> "$out/bench_stderr.txt" || echo "exit $?" >> "$out/bench_stderr.txt"
    fi
}
say "arm64 (emulated $arm_cpu): predict with each of $(wc -w <<<"$models") shipped models, then bench"
t0=$SECONDS; run_side arm64; say "arm64 side took $((SECONDS - t0)) s"
say "x86 ($("$x86_python" -c 'import platform; print(platform.machine())')): the same"
run_side x86

say "compare"
"$x86_python" - "$work/out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ok, ran = True, True
def load(p):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        return None
for pa in sorted((out / "arm64").glob("predict_*.json")):
    px = out / "x86" / pa.name
    a, x = load(pa), load(px)
    name = pa.stem[len("predict_"):]
    if a is None or x is None:
        side = "arm64" if a is None else "x86"
        print(f"FAIL {name}: no JSON from {side} "
              f"(stderr: {(out / side / ('predict_stderr_' + name + '.txt')).read_text()[-300:]!r})")
        ok = ran = False
        continue
    def key(r):  # paths differ between the chroot and the host: compare by the last two parts
        return "/".join(Path(r["path"]).parts[-2:])
    ra, rx = {key(r): r for r in a["results"]}, {key(r): r for r in x["results"]}
    same = sorted(set(ra) & set(rx))
    agree = sum(ra[k]["label"] == rx[k]["label"] for k in same)
    dp = max((abs(ra[k]["p_fake"] - rx[k]["p_fake"]) for k in same if ra[k]["p_fake"] is not None), default=float("nan"))
    err = (pa.parent / f"predict_stderr_{name}.txt").read_text().strip()
    good = len(same) == len(ra) == len(rx) and agree == len(same) and dp < 0.02
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} {name}: {len(same)} images, labels agree {agree}/{len(same)}, "
          f"max |p_fake arm64 - x86| {dp:.2e}, arm64 stderr {'empty' if not err else repr(err[:120])}")
ba, bx = load(out / "arm64" / "bench.json"), load(out / "x86" / "bench.json")
if ba is None or bx is None:
    side = "arm64" if ba is None else "x86"
    print(f"FAIL bench: no JSON from {side} (stderr: {(out / side / 'bench_stderr.txt').read_text()[-300:]!r})")
    ok = ran = False
else:
    host = ba["host"]
    print(f"bench on arm64: {host['arch']}, {host['cpu']}, {host['interpreter']}, python {host['python']}, "
          f"numpy {host['numpy']}; cpu_flags {host.get('cpu_flags')}")
    x86_rows = {Path(r["model"]).stem: r for r in bx["rows"]}
    for ra in ba["rows"]:  # the same files on both sides (models/*.tflite of the same tree), matched by name
        rx = x86_rows.get(Path(ra["model"]).stem)
        if rx is None:
            print(f"FAIL bench {Path(ra['model']).stem}: no x86 row for it")
            ok = False
            continue
        good = ra["accuracy"] is not None and abs(ra["accuracy"] - rx["accuracy"]) <= 1 / max(ba["n_images"], 1) + 1e-12
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} bench {Path(ra['model']).stem}: accuracy arm64 {ra['accuracy']:.4f} "
              f"x86 {rx['accuracy']:.4f} on {ba['n_images']} images (emulated img/s not a Pi figure)")
print("VERDICT:", "arm64 runtime install works and agrees with x86" if ok else
      "arm64 and x86 DISAGREE (see FAIL lines)" if ran else "a run FAILED (see FAIL lines)")
sys.exit(0 if ok else 1)
EOF
