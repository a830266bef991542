"""protoc / grpc_cpp_plugin code generation from Debian's compilers (no downloads)."""

def appliance_cc_proto(name, srcs, deps = [], grpc = False, visibility = None):
    """C++ library from .proto files.

    Args:
      name: the cc_library's name.
      srcs: .proto files of this package (paths relative to the package).
      deps: other appliance_cc_proto targets whose .protos these import.
      grpc: also generate gRPC service stubs (*.grpc.pb.{h,cc}).
      visibility: of the cc_library.
    """
    pkg = native.package_name()
    outs_h = []
    outs_cc = []
    for s in srcs:
        base = s[:-len(".proto")]
        outs_h.append(base + ".pb.h")
        outs_cc.append(base + ".pb.cc")
        if grpc:
            outs_h.append(base + ".grpc.pb.h")
            outs_cc.append(base + ".grpc.pb.cc")
    dep_protos = [d + "_protos" for d in deps]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + dep_protos,
        visibility = ["//visibility:public"],
    )
    out_dir = "$(GENDIR)"
    grpc_flags = ""
    if grpc:
        grpc_flags = "--grpc_out=%s --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin " % out_dir
    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_protos,
        outs = outs_h + outs_cc,
        cmd = "/usr/bin/protoc -I. --cpp_out=%s %s%s" % (
            out_dir,
            grpc_flags,
            " ".join(["%s/%s" % (pkg, s) for s in srcs]),
        ),
    )
    sys_deps = ["@system//:protobuf"]
    if grpc:
        sys_deps.append("@system//:grpc")
    native.cc_library(
        name = name,
        srcs = outs_cc,
        hdrs = outs_h,
        deps = deps + sys_deps,
        visibility = visibility,
    )
