#!/usr/bin/env python3
"""Generates apiserver/src/protobuf/schema.rs, the field table the protobuf
body decoder walks (apiserver/src/protobuf/mod.rs).

Regenerate (from the repository root, after `cargo fetch` has unpacked both
crates into ~/.cargo/registry/src):

    python3 apiserver/tools/gen_protobuf_schema.py

or with explicit crate sources:

    python3 apiserver/tools/gen_protobuf_schema.py \
        --k8s-pb ~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0 \
        --k8s-openapi ~/.cargo/registry/src/index.crates.io-*/k8s-openapi-0.25.0 \
        --out apiserver/src/protobuf/schema.rs

Sources:
- k8s-pb 0.9.0 (prost-generated from k8s.io/api's generated.proto) gives each
  message's field numbers and wire types:
  `#[prost(TYPE, optional|repeated|btree_map = "k, v", tag = "N")] pub NAME: T`.
- k8s-openapi 0.25.0 (v1_32) gives the upstream JSON field names and the Go
  type names: prost's snake_case and UpperCamelCase lose acronyms (`host_ip`
  is `hostIP`, `ApiGroup` is `APIGroup`). Each type's Deserialize impl lists
  `"podIP" => Field::Key_pod_ip`; fields are matched on the name lowercased
  without underscores.

Only messages reachable from the top-level kinds (objects with an ObjectMeta
`metadata`) of the packages the apiserver serves, plus meta/v1 DeleteOptions,
are emitted.
"""

import argparse
import glob
import os
import re
import sys

PACKAGES = [
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/rbac/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/scheduling/v1",
    "api/admissionregistration/v1",
    "api/policy/v1",
    "api/autoscaling/v1",
    "api/authentication/v1",
    "apimachinery/pkg/apis/meta/v1",
]
# Roots besides the served packages' kinds.
EXTRA_ROOTS = [
    "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Status",
]

SCALARS = {
    "string": "S",
    "bool": "BOOL",
    "int32": "I32",
    "int64": "I64",
    "double": "F64",
    "bytes": "BYTES",
}


def registry_dir(name):
    hits = sorted(glob.glob(os.path.expanduser(f"~/.cargo/registry/src/*/{name}")))
    if not hits:
        sys.exit(f"{name} not found under ~/.cargo/registry/src; run `cargo fetch` in a crate depending on it")
    return hits[-1]


def module_to_package(module):
    return "k8s.io." + ".".join(module)


def resolve_type(module, rust_type):
    """`super::super::x::y::Name` relative to module -> (module path, Name)."""
    rust_type = rust_type.strip()
    parts = [p for p in rust_type.split("::") if p]
    base = list(module)
    while parts and parts[0] == "super":
        base.pop()
        parts.pop(0)
    if parts and parts[0] == "crate":
        base = []
        parts.pop(0)
    return tuple(base + parts[:-1]), parts[-1]


def innermost(rust_type):
    """The element type inside Option<..>, Vec<..>, Box<..>."""
    t = re.sub(r",>", ">", re.sub(r"\s+", "", rust_type))
    wrappers = ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]
    changed = True
    while changed:
        changed = False
        for w in wrappers:
            if t.startswith(w) and t.endswith(">"):
                t = t[len(w):-1]
                changed = True
    return t


def parse_pb(pb_root):
    """All prost messages: {(module, RustName): [(tag, rust_field, kind, repeated)]}."""
    messages = {}
    for path in glob.glob(os.path.join(pb_root, "src", "**", "mod.rs"), recursive=True):
        rel = os.path.relpath(os.path.dirname(path), os.path.join(pb_root, "src"))
        module = tuple(rel.split(os.sep))
        text = open(path).read()
        text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
        for m in re.finditer(r"pub struct (\w+) \{\n(.*?)\n\}", text, re.S):
            name, body = m.group(1), m.group(2)
            fields = []
            for f in re.finditer(
                r"#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):\s*(.*?),\n(?=\s*#\[prost|\s*$)",
                body + "\n",
                re.S,
            ):
                attrs, fname, ftype = f.group(1), f.group(2), f.group(3)
                tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                repeated = "repeated" in attrs
                mm = re.search(r'btree_map = "(\w+), (\w+)"', attrs) or re.search(r'hash_map = "(\w+), (\w+)"', attrs)
                if mm:
                    key, val = mm.group(1), mm.group(2)
                    if val == "message":
                        inner = re.sub(r",>", ">", re.sub(r"\s+", "", ftype))
                        inner = inner[inner.index(",") + 1 : inner.rindex(">")]
                        val = ("message", resolve_type(module, inner))
                    kind = ("map", key, val)
                else:
                    wire = attrs.split(",")[0].split("=")[0].strip()
                    if wire == "message":
                        kind = ("message", resolve_type(module, innermost(ftype)))
                    elif wire in SCALARS:
                        kind = (wire,)
                    else:
                        sys.exit(f"{module}::{name}.{fname}: unsupported prost type {attrs!r}")
                fields.append((tag, fname, kind, repeated))
            messages[(module, name)] = fields
    return messages


def parse_openapi(openapi_root):
    """{(module, lowercase name): (GoName, [json names])} from k8s-openapi v1_32."""
    types = {}
    base = os.path.join(openapi_root, "src", "v1_32")
    for path in glob.glob(os.path.join(base, "**", "*.rs"), recursive=True):
        rel = os.path.relpath(os.path.dirname(path), base)
        module = tuple(rel.split(os.sep))
        text = open(path).read()
        sm = re.search(r"^pub struct (\w+)", text, re.M)
        if not sm:
            continue
        names = re.findall(r'^\s*"([^"]+)" => Field::Key_\w+,', text, re.M)
        types[(module, sm.group(1).lower())] = (sm.group(1), names)
    return types


def norm(s):
    return s.replace("_", "").lower()


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", default=None)
    ap.add_argument("--k8s-openapi", default=None)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "src", "protobuf", "schema.rs"))
    args = ap.parse_args()
    pb_root = args.k8s_pb or registry_dir("k8s-pb-0.9.0")
    oa_root = args.k8s_openapi or registry_dir("k8s-openapi-0.25.0")

    pb = parse_pb(pb_root)
    oa = parse_openapi(oa_root)

    def go_name(key):
        module, rust_name = key
        hit = oa.get((module, rust_name.lower()))
        return hit[0] if hit else rust_name

    def full_name(key):
        return module_to_package(key[0]) + "." + go_name(key)

    # Roots: every kind in the served packages, i.e. a message with an
    # ObjectMeta `metadata` field.
    object_meta = (("apimachinery", "pkg", "apis", "meta", "v1"), "ObjectMeta")
    served = {tuple(p.split("/")) for p in PACKAGES}
    roots = []
    for key, fields in sorted(pb.items()):
        if key[0] in served and any(f[1] == "metadata" and f[2] == ("message", object_meta) for f in fields):
            roots.append(key)
    by_full = {full_name(k): k for k in pb}
    for extra in EXTRA_ROOTS:
        roots.append(by_full[extra])

    reachable = {}
    stack = list(roots)
    while stack:
        key = stack.pop()
        if key in reachable:
            continue
        if key not in pb:
            sys.exit(f"unknown message {key}")
        reachable[key] = pb[key]
        for _, _, kind, _ in pb[key]:
            if kind[0] == "message":
                stack.append(kind[1])
            elif kind[0] == "map" and isinstance(kind[2], tuple):
                stack.append(kind[2][1])

    def kind_expr(kind):
        if kind[0] == "message":
            return f'Kind::Message("{full_name(kind[1])}")'
        if kind[0] == "map":
            key = SCALARS[kind[1]]
            val = kind[2]
            val_expr = f'&Kind::Message("{full_name(val[1])}")' if isinstance(val, tuple) else "&" + SCALARS[val]
            return f"Kind::Map(&{key}, {val_expr})"
        return SCALARS[kind[0]]

    out = []
    out.append("// @generated by apiserver/tools/gen_protobuf_schema.py from k8s-pb 0.9.0 (field numbers)")
    out.append("// and k8s-openapi 0.25.0 v1_32 (JSON names). Do not edit; rerun the script.")
    out.append("//! The protobuf field table: every message reachable from the served kinds.")
    out.append("")
    out.append("use super::{Field, Kind, Message, @SCALARS@};")
    out.append("")
    out.append("/// Sorted by name, for binary search.")
    out.append("pub static MESSAGES: &[Message] = &[")
    unmatched = 0
    inlined = 0
    for key in sorted(reachable, key=full_name):
        fields = reachable[key]
        oa_hit = oa.get((key[0], key[1].lower()))
        json_names = {norm(n): n for n in (oa_hit[1] if oa_hit else [])}
        out.append(f'    Message {{ name: "{full_name(key)}", fields: &[')
        for tag, fname, kind, repeated in sorted(fields):
            json = json_names.get(norm(fname))
            if json is None and kind[0] == "message" and oa_hit:
                # Go's `json:",inline"` embedded struct (ProbeHandler in Probe,
                # VolumeSource in Volume): its own message on the wire, its
                # fields flattened into the parent in JSON.
                # k8s-openapi has no type for most embedded structs, so compare
                # the child's proto field names with the parent's JSON names.
                # Embeddings nest (RuleWithOperations embeds Rule), so one
                # level of the child's message fields counts too.
                direct = {norm(f[1]) for f in pb[kind[1]]}
                nested = set(direct)
                for f in pb[kind[1]]:
                    if f[2][0] == "message":
                        nested |= {norm(g[1]) for g in pb[f[2][1]]}
                if any(c and len(c & set(json_names)) * 2 > len(c) for c in (direct, nested)):
                    out.append(
                        f'        Field {{ tag: {tag}, json: "", kind: Kind::Inline("{full_name(kind[1])}"), repeated: false }},'
                    )
                    inlined += 1
                    continue
            if json is None:
                json = lower_camel(fname)
                if oa_hit and oa_hit[1]:
                    unmatched += 1
                    print(f"warning: {full_name(key)}.{fname}: no JSON name in k8s-openapi, using {json}", file=sys.stderr)
            out.append(
                f'        Field {{ tag: {tag}, json: "{json}", kind: {kind_expr(kind)}, repeated: {"true" if repeated else "false"} }},'
            )
        out.append("    ] },")
    out.append("];")
    text = "\n".join(out) + "\n"
    used = sorted(c for c in SCALARS.values() if re.search(rf"\b{c}\b", text.split("pub static", 1)[1]))
    text = text.replace("@SCALARS@", ", ".join(used))
    with open(args.out, "w") as f:
        f.write(text)
    print(
        f"wrote {args.out}: {len(reachable)} messages from {len(roots)} roots, "
        f"{inlined} inline embeddings, {unmatched} field names newer than v1_32 guessed",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
