{
  "targets": [
    {
      "target_name": "polygate_accounting",
      "sources": [
        "native/src/addon.cc",
        "native/src/tracker.cc",
        "native/src/parsers.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-O2", "-O0"],
      "cflags_cc!": ["-O2", "-O0", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-O3"],
      "cflags_cc": ["-O3", "-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17", "/O2"] }
      }
    }
  ]
}
