{
  # The shmbroker native addon: memfd, mmap, SCM_RIGHTS over SOCK_SEQPACKET,
  # SO_PEERCRED/SO_PEERGROUPS and the /dev/shmbroker ioctls.
  # Built by `npm ci` (package.json "install": "node-gyp rebuild").
  "targets": [
    {
      "target_name": "shmbroker_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/errors.cc",
        "native/src/fdops.cc",
        "native/src/mapping.cc",
        "native/src/seqpacket.cc",
        "native/src/kmod.cc",
        "native/src/doorbell.cc",
        "native/src/uvpoll.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "kmod/include/uapi"
      ],
      "defines": [
        # Pinned Node-API level: 8 is available on every Node >= 12.22 / 14.17,
        # and has everything used here (BigInt, detach, instance data).
        "NAPI_VERSION=8",
        # C++ exceptions stay off: every error is returned as a pending JS exception.
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        # A worker being terminated refuses every Node-API call. Without this,
        # node-addon-api turns the refused throw into a fatal error (abort)
        # when a libuv callback of ours runs in that window (native/threads.test.ts).
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "cflags!": ["-fexceptions"],
      "cflags_cc!": ["-fexceptions"],
      "cflags": ["-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc": ["-std=gnu++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type", "-fno-exceptions"]
    }
  ]
}
