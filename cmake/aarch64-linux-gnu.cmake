# Cross build for arm64 (Raspberry Pi 3/4/5 class, 64-bit Debian) with Debian's multiarch
# toolchain: the compilers from g++-aarch64-linux-gnu, the libraries from the :arm64 -dev
# packages in /usr/lib/aarch64-linux-gnu (scripts/install-deps with STRELAY_WITH_ARM64=1).
# The preset "arm64" (CMakePresets.json) uses this file; scripts/test-arm64 builds and tests it.
#
# Multiarch needs no sysroot: the cross compiler already searches the aarch64 directories, and
# the architecture-independent headers (/usr/include, Boost, CLI11, nlohmann-json, doctest) are
# shared. What must not leak in is an amd64 library, hence the pkg-config directory and the
# library architecture below.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# pkg-config reads only the arm64 .pc files (and the architecture-independent ones). LIBDIR
# replaces the default path, so the host's x86_64 files are never consulted.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# find_package/find_library: /usr is the one prefix (no re-rooting); with the library
# architecture set they look in lib/aarch64-linux-gnu (CapnProto's and Boost's config files, the
# libraries), never in lib/x86_64-linux-gnu, and in the architecture-independent share/ and
# lib/cmake/ (CLI11, nlohmann-json, doctest).

# The schema compiler runs on the host: Debian's capnproto (amd64) is the same version as
# libcapnp-dev:arm64, so the generated code matches the arm64 library.
set(CAPNP_EXECUTABLE /usr/bin/capnp CACHE FILEPATH "the host's capnp schema compiler")
set(CAPNPC_CXX_EXECUTABLE /usr/bin/capnpc-c++ CACHE FILEPATH "the host's capnpc-c++ plugin")

# qemu-user runs the arm64 programs on the build machine, with no binfmt registration: ctest
# prefixes every test command with it, and the man pages' help2man step runs --help through it
# (cmake/packaging.cmake). No -L /usr/aarch64-linux-gnu: that directory's loader comes from
# libc6-arm64-cross (2.36-8cross1 here) while libc.so.6 then resolves to multiarch libc6:arm64
# (2.36-9+deb12u14); a loader and libc of different builds corrupt glibc's thread-stack lists
# (pthread_create and fork spin forever). /lib/ld-linux-aarch64.so.1 from libc6:arm64 is the
# loader a Raspberry Pi's Debian runs too.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
