#!/usr/bin/env bash
# build_llama_vulkan.sh — build llama.cpp's `llama-bench` with the Vulkan backend
# (GGML_VULKAN=ON, static ggml/llama libs, no CUDA), from the llama.cpp source
# vendored in the llama-cpp-python==0.3.36 sdist (vendor/llama.cpp, llama.cpp
# 0c1e57098), so the q4gpu benchmarks can compare against llama.cpp's Vulkan backend.
#
# Everything is fetched by package name through the machine's configured sources:
# the sdist with `pip download`, the Debian packages with `apt-get download`.
#
# Two stages, because the GPU machine has no network and the dev machine is slow:
#
#   stage  (dev machine: python3 + pip, apt-get, dpkg; light work only):
#       bash benches/build_llama_vulkan.sh stage
#     -> .dev-vk/llama.cpp-src.tgz   trimmed vendor/llama.cpp (no models/docs/tests/other backends)
#        .dev-vk/vk-toolchain.tgz    glslc/  : Debian 13 (trixie) glslc 2025.2 + libshaderc1, run through
#                                              trixie's own ld-linux/glibc 2.41 (wrapper script), so it works
#                                              on hosts with an older glibc (Debian 12's glslc is too old for
#                                              the coopmat/coopmat2/integer-dot shaders);
#                                    sdk/    : trixie Vulkan headers 1.4.309, libvulkan.so (link-time only),
#                                              SPIRV-Headers cmake config.
#     The sdist: `pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36`,
#     checked against its SHA-256. The Debian packages: `apt-get download` with a private apt
#     state (no change to the system's) whose one source is the Debian archive this machine is
#     already configured with (read from `apt-get indextargets`), suite $DEBIAN_SUITE (default
#     trixie), component main.
#     .dev-vk/ is added to .git/info/exclude when it is the default folder.
#
#   build  (GPU machine or any x86-64 Linux with cmake >= 3.19, gcc/g++ (ninja optional); no network):
#       bash benches/build_llama_vulkan.sh build [JOBS]
#     -> .dev-vk/llama-bench-vulkan.gz  (llama-bench; ggml/llama linked statically, libvulkan.so.1
#                                        and glibc/libstdc++ dynamically — needs a Vulkan loader + ICD
#                                        at run time, e.g. the .gl/ debs on the device machine)
#     On the device machine (via the `run` tool, carry .dev-vk and .gl):
#       for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig;
#       export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
#       bash benches/build_llama_vulkan.sh build 16
#     Took 103 s on the 16-core H100 host (Ubuntu 24.04, glibc 2.39, gcc 13.3, cmake 4.4, ninja):
#     458 ninja steps, 156 shader-generation steps. Result: 54.5 MB stripped, 17.9 MB gzipped.
#     Bringing it back through $OUT needs `split -b 15M` (16 MiB per returned file).
#     glslc 2025.2 supports GL_KHR_cooperative_matrix, GL_NV_cooperative_matrix2 and
#     GL_EXT_integer_dot_product; not GL_NV_cooperative_matrix_decode_vector, GL_EXT_bfloat16,
#     GL_EXT_float_e2m1/e4m3 (those optional shader paths are compiled out).
#
# Env: VK_DIR (staging folder, default .dev-vk), BUILD_DIR (build folder, default /tmp/llama-vk),
#      DEBIAN_SUITE (stage: the Debian suite the toolchain comes from, default trixie).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VK=${VK_DIR:-$ROOT/.dev-vk}   # staging folder (git-ignored)
SDIST_PKG=llama-cpp-python
SDIST_VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
SUITE=${DEBIAN_SUITE:-trixie}
TRIXIE_DEBS="glslc libshaderc1 libc6 libstdc++6 libgcc-s1 libvulkan-dev libvulkan1 spirv-headers"

# The Debian archive this machine's apt is configured with (its main suite's Repo-URI).
debian_archive() {
    apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' 'Label: Debian' | head -n 1
}

stage() {
    mkdir -p "$VK"
    if [[ -z ${VK_DIR:-} ]]; then # keep the default staging folder out of git
        local gd; gd=$(cd "$ROOT" && git rev-parse --path-format=absolute --git-common-dir 2>/dev/null) || gd=
        if [[ -n $gd ]] && ! grep -qx '/.dev-vk/' "$gd/info/exclude" 2>/dev/null; then
            mkdir -p "$gd/info" && echo '/.dev-vk/' >>"$gd/info/exclude"
        fi
    fi
    local T; T=$(mktemp -d)
    # 1. llama.cpp source: the sdist, by name and version, through pip's configured index
    #    (pip prepares its metadata, which installs the build backend in pip's isolated env).
    python3 -m pip download --quiet --no-deps --no-cache-dir --no-binary "$SDIST_PKG" \
        "$SDIST_PKG==$SDIST_VERSION" -d "$T/sdist"
    local sdist=$T/sdist/llama_cpp_python-$SDIST_VERSION.tar.gz
    echo "$SDIST_SHA256  $sdist" | sha256sum -c -
    tar xzf "$sdist" -C "$T"
    local excl=(--exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/media
                --exclude=llama.cpp/gguf-py --exclude=llama.cpp/tests --exclude=llama.cpp/examples
                --exclude=llama.cpp/pocs --exclude=llama.cpp/tools/ui --exclude=llama.cpp/benches
                --exclude=llama.cpp/conversion)
    for b in cann cuda et hexagon hip metal musa opencl openvino sycl virtgpu webgpu zdnn zendnn; do
        excl+=(--exclude=llama.cpp/ggml/src/ggml-$b)
    done
    tar czf "$VK/llama.cpp-src.tgz" -C "$T/llama_cpp_python-$SDIST_VERSION/vendor" "${excl[@]}" llama.cpp

    # 2. glslc + Vulkan headers from Debian 13 (trixie), via a private apt state (no system
    #    change) whose only source is the configured Debian archive, suite $SUITE.
    local archive; archive=$(debian_archive)
    [[ -n $archive ]] || { echo "no Debian archive among apt's configured sources (apt-get update first?)" >&2; exit 1; }
    echo "deb $archive $SUITE main" > "$T/trixie.list"
    mkdir -p "$T/lists/partial" "$T/cache/archives/partial" "$T/debs" "$T/x"
    local O=(-o Dir::Etc::SourceList="$T/trixie.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$T/lists" -o Dir::Cache="$T/cache"
             -o APT::Architecture=amd64 -o APT::Architectures=amd64)
    apt-get "${O[@]}" update
    (cd "$T/debs" && apt-get "${O[@]}" download $TRIXIE_DEBS)
    for f in "$T"/debs/*.deb; do dpkg -x "$f" "$T/x"; done
    local L=$T/x/usr/lib/x86_64-linux-gnu S=$T/stage
    mkdir -p $S/glslc/lib $S/sdk/include $S/sdk/lib $S/sdk/share/cmake
    cp -L $L/ld-linux-x86-64.so.2 $L/libc.so.6 $L/libm.so.6 $L/libgcc_s.so.1 $L/libstdc++.so.6 \
          $L/libshaderc.so.1 $L/libpthread.so.0 $L/libdl.so.2 $L/librt.so.1 $S/glslc/lib/
    cp "$T/x/usr/bin/glslc" $S/glslc/glslc.bin
    cat > $S/glslc/glslc <<'EOF'
#!/bin/sh
# Debian 13 glslc 2025.2, run through its own bundled glibc 2.41 loader so it works on older distros.
D=$(dirname "$(readlink -f "$0")")
exec "$D/lib/ld-linux-x86-64.so.2" --library-path "$D/lib" "$D/glslc.bin" "$@"
EOF
    chmod +x $S/glslc/glslc
    cp -a "$T"/x/usr/include/{vulkan,vk_video,spirv} $S/sdk/include/
    cp -a "$T/x/usr/share/cmake/SPIRV-Headers" $S/sdk/share/cmake/
    cp -L $L/libvulkan.so.1 $S/sdk/lib/libvulkan.so
    $S/glslc/glslc --version
    tar czf "$VK/vk-toolchain.tgz" -C $S glslc sdk
    rm -rf "$T"
    ls -la "$VK"
}

build() {
    local JOBS=${1:-$(nproc)}
    local W=${BUILD_DIR:-/tmp/llama-vk}
    rm -rf "$W"; mkdir -p "$W"
    tar xzf "$VK/llama.cpp-src.tgz" -C "$W"
    tar xzf "$VK/vk-toolchain.tgz" -C "$W"
    local SDK=$W/sdk
    "$W/glslc/glslc" --version
    local GEN="Unix Makefiles"; command -v ninja >/dev/null && GEN=Ninja
    cmake -S "$W/llama.cpp" -B "$W/build" -G "$GEN" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DGGML_VULKAN=ON -DGGML_CUDA=OFF -DGGML_NATIVE=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
        -DVulkan_INCLUDE_DIR="$SDK/include" -DVulkan_LIBRARY="$SDK/lib/libvulkan.so" \
        -DVulkan_GLSLC_EXECUTABLE="$W/glslc/glslc" \
        -DSPIRV-Headers_DIR="$SDK/share/cmake/SPIRV-Headers"
    cmake --build "$W/build" --target llama-bench -j "$JOBS"
    local B=$W/build/bin/llama-bench
    strip "$B"
    ldd "$B" || true
    gzip -9 -c "$B" > "$VK/llama-bench-vulkan.gz"
    ls -la "$B" "$VK/llama-bench-vulkan.gz"
}

case "${1:-}" in
    stage) stage ;;
    build) shift; build "$@" ;;
    *) echo "usage: $0 stage | build [JOBS]" >&2; exit 2 ;;
esac
