"""Cut the subsets of Azure ML's OpenAPI (Swagger 2.0) specification that nbmill's request bodies
are checked against, as self-contained JSON Schemas (draft 2020-12).

    python schemas/azureml-rest/cut.py SPECS [--commit SHA] [--out DIR]

SPECS is a checkout (or a bare git directory, with ``--commit``) of Azure/azure-rest-api-specs.
For each API version in ``CUTS`` the definitions reachable from its roots are copied under
``$defs``, with what Swagger 2.0 means spelled out in JSON Schema:

- ``allOf`` inheritance is flattened: a definition carries its ancestors' properties and
  required properties, so its ``additionalProperties: false`` means what it says;
- a polymorphic base (``discriminator``) becomes a dispatch on the discriminator: each value
  (``x-ms-discriminator-value``, else the definition's name) is checked against its own
  definition; a value of the discriminator's enum that no definition takes is checked against
  the base; a value of a definition left out (``keep``) is refused;
- ``x-nullable`` becomes ``anyOf [schema, null]``; references into other files of the
  specification (common-types too) are copied in, named ``<file>.<definition>``;
- descriptions and ``x-ms-*`` extensions are dropped; validation keywords are kept as given.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import subprocess
from pathlib import Path

SPEC_DIR = (
    "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices"
)
MAIN = "mfe.json"

# The API version each request goes out with (azure-ai-ml 1.35's MLClient: online endpoints on
# 2022-02-01-preview, online deployments on 2023-04-01-preview, schedules on 2023-06-01-preview),
# the body definition of its PUT, and, for a polymorphic base, the only subtypes kept.
CUTS = {
    "2022-02-01-preview": {"roots": ["OnlineEndpointTrackedResource"], "keep": {}},
    "2023-04-01-preview": {"roots": ["OnlineDeploymentTrackedResource"], "keep": {}},
    "2023-06-01-preview": {
        "roots": ["ScheduleResource"],
        "keep": {"ScheduleActionBase": ["CreateMonitorAction"]},
    },
}

DROPPED = {"description", "example", "examples", "discriminator", "externalDocs"}


class Source:
    """Files of the specs repository, from a checkout or from a commit of a git directory."""

    def __init__(self, root: Path, commit: str | None):
        self.root, self.commit = Path(root), commit
        self._cache: dict[str, dict] = {}

    def revision(self) -> str:
        if self.commit is None and not (self.root / ".git").exists():
            return "unknown"
        done = subprocess.run(
            ["git", f"--git-dir={self._git_dir()}", "rev-parse", self.commit or "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def _git_dir(self) -> Path:
        return self.root / ".git" if (self.root / ".git").exists() else self.root

    def load(self, path: str) -> dict:
        if path not in self._cache:
            if self.commit:
                text = subprocess.run(
                    ["git", f"--git-dir={self._git_dir()}", "show", f"{self.commit}:{path}"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            else:
                text = (self.root / path).read_text(encoding="utf-8")
            self._cache[path] = json.loads(text)
        return self._cache[path]


class Cutter:
    def __init__(self, source: Source, version_dir: str, keep: dict[str, list[str]]):
        self.source, self.version_dir, self.keep = source, version_dir, keep
        self.main = posixpath.join(version_dir, MAIN)
        self.defs: dict[str, dict] = {}
        self.todo: list[tuple[str, str, str]] = []  # (key, file, definition name)

    # --- names --------------------------------------------------------------------------------

    def key(self, path: str, name: str) -> str:
        if path == self.main:
            return name
        folder, file = posixpath.split(path)
        stem = file.removesuffix(".json")
        if folder == self.version_dir:
            return f"{stem}.{name}"
        return f"{posixpath.basename(folder)}.{stem}.{name}"

    def resolve(self, ref: str, path: str) -> tuple[str, str]:
        file, _, pointer = ref.partition("#")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), file)) if file else path
        prefix = "/definitions/"
        if not pointer.startswith(prefix) or "/" in pointer[len(prefix) :]:
            raise ValueError(f"unsupported $ref {ref!r} in {path}")
        return target, pointer[len(prefix) :]

    def definition(self, path: str, name: str) -> dict:
        return self.source.load(path)["definitions"][name]

    def want(self, path: str, name: str, suffix: str = "") -> str:
        key = self.key(path, name) + suffix
        if key not in self.defs and (key, path, name) not in self.todo:
            self.todo.append((key, path, name))
        return "#/$defs/" + key

    # --- polymorphism -------------------------------------------------------------------------

    def parents(self, path: str, name: str) -> list[tuple[str, str]]:
        found = []
        for part in self.definition(path, name).get("allOf", []):
            if "$ref" in part:
                found.append(self.resolve(part["$ref"], path))
        return found

    def polymorphic_root(self, path: str, name: str) -> tuple[str, str] | None:
        """The nearest definition at or above this one that names a discriminator."""
        if "discriminator" in self.definition(path, name):
            return path, name
        for parent in self.parents(path, name):
            found = self.polymorphic_root(*parent)
            if found:
                return found
        return None

    def subtypes(self, path: str, name: str) -> list[tuple[str, str]]:
        """Every definition of the same file that inherits from this one, however deep."""
        found = []
        for other in self.source.load(path)["definitions"]:
            if other != name and self._inherits(path, other, (path, name)):
                found.append((path, other))
        return found

    def _inherits(self, path: str, name: str, base: tuple[str, str]) -> bool:
        return any(p == base or self._inherits(*p, base) for p in self.parents(path, name))

    @staticmethod
    def value(definition: dict, name: str) -> str:
        return definition.get("x-ms-discriminator-value", name)

    # --- conversion ---------------------------------------------------------------------------

    def convert(self, schema, path: str):
        if not isinstance(schema, dict):
            return schema
        out: dict = {}
        for word, given in schema.items():
            if word in DROPPED or word.startswith("x-ms-") or word == "x-nullable":
                continue
            if word == "$ref":
                target = self.resolve(given, path)
                out["$ref"] = self.want(*target)
            elif word == "properties":
                out[word] = {k: self.convert(v, path) for k, v in sorted(given.items())}
            elif word in ("items", "additionalProperties"):
                out[word] = self.convert(given, path)
            elif word == "allOf":
                out[word] = [self.convert(part, path) for part in given]
            else:
                out[word] = given
        if schema.get("x-nullable") is True:
            return {"anyOf": [out, {"type": "null"}]}
        return out

    def flat(self, path: str, name: str) -> dict:
        """The definition with its ancestors' properties folded in, and its own discriminator
        value fixed."""
        definition = self.definition(path, name)
        properties: dict = {}
        required: list[str] = []
        for part in definition.get("allOf", []):
            if "$ref" in part:
                inherited = self.flat(*self.resolve(part["$ref"], path))
            else:
                inherited = self.convert(part, path)
            properties.update(inherited.get("properties", {}))
            required += [r for r in inherited.get("required", []) if r not in required]
        own = {k: v for k, v in definition.items() if k != "allOf"}
        converted = self.convert(own, path)
        properties.update(converted.pop("properties", {}))
        required += [r for r in converted.pop("required", []) if r not in required]
        converted.pop("additionalProperties", None)
        converted.pop("type", None)
        out: dict = {"type": "object"}
        if properties:
            out["properties"] = dict(sorted(properties.items()))
        if required:
            out["required"] = required
        if "additionalProperties" in definition:
            out["additionalProperties"] = self.convert(definition["additionalProperties"], path)
        out.update(converted)
        root = self.polymorphic_root(path, name)
        if root is not None:
            discriminator = self.definition(*root)["discriminator"]
            value = self.value(definition, name)
            if "discriminator" not in definition or "x-ms-discriminator-value" in definition:
                out.setdefault("properties", {})[discriminator] = {"enum": [value]}
        return out

    def dispatch(self, path: str, name: str) -> dict:
        """A polymorphic base: each discriminator value checked against its own definition."""
        definition = self.definition(path, name)
        discriminator = definition["discriminator"]
        subtypes = self.subtypes(path, name)
        kept = self.keep.get(name)
        by_value = {}
        left_out = []
        for sub_path, sub in subtypes:
            sub_def = self.definition(sub_path, sub)
            if "x-ms-discriminator-value" not in sub_def and "discriminator" in sub_def:
                continue  # an intermediate base: its own subtypes carry the values
            value = self.value(sub_def, sub)
            if kept is not None and sub not in kept:
                left_out.append(f"{value} ({sub})")
                continue
            suffix = ".self" if "discriminator" in sub_def else ""
            by_value[value] = self.want(sub_path, sub, suffix)
        enum = self._enum(definition["properties"][discriminator], path)
        rest = [v for v in (enum or []) if v not in by_value and kept is None]
        branches = [
            {
                "if": {"properties": {discriminator: {"enum": [value]}}},
                "then": {"$ref": ref},
            }
            for value, ref in sorted(by_value.items())
        ]
        if rest:
            branches.append(
                {
                    "if": {"properties": {discriminator: {"enum": rest}}},
                    "then": {"$ref": self.want(path, name, ".self")},
                }
            )
        out: dict = {
            "type": "object",
            "required": [discriminator],
            "properties": {discriminator: {"enum": sorted(by_value) + rest}},
            "allOf": branches,
        }
        if left_out:
            out["$comment"] = "not in this subset: " + ", ".join(sorted(left_out))
        return out

    def _enum(self, schema: dict, path: str) -> list[str] | None:
        if "$ref" in schema:
            target_path, target = self.resolve(schema["$ref"], path)
            return self._enum(self.definition(target_path, target), target_path)
        return schema.get("enum")

    def cut(self, roots: list[str]) -> dict:
        for root in roots:
            self.want(self.main, root)
        while self.todo:
            key, path, name = self.todo.pop(0)
            if key in self.defs:
                continue
            definition = self.definition(path, name)
            if "discriminator" in definition and not key.endswith(".self"):
                self.defs[key] = self.dispatch(path, name)
            elif "type" in definition and definition["type"] != "object" or "enum" in definition:
                self.defs[key] = self.convert(definition, path)
                self.defs[key].pop("additionalProperties", None)  # said of enums, to no end
            else:
                self.defs[key] = self.flat(path, name)
        return dict(sorted(self.defs.items()))


def cut(source: Source, version: str, roots: list[str], keep: dict[str, list[str]]) -> dict:
    kind = "preview" if version.endswith("-preview") else "stable"
    version_dir = f"{SPEC_DIR}/{kind}/{version}"
    defs = Cutter(source, version_dir, keep).cut(roots)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Cut by cut.py from Azure/azure-rest-api-specs@{source.revision()}, "
            f"{version_dir}/{MAIN} (MIT licence: LICENSE). Roots: {', '.join(roots)}; "
            "validate a body against {'$ref': '#/$defs/<root>'} with these $defs."
        ),
        "$defs": defs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", type=Path, help="a checkout or git dir of azure-rest-api-specs")
    parser.add_argument("--commit", help="read the files at this commit (git show)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    source = Source(args.specs, args.commit)
    for version, spec in CUTS.items():
        subset = cut(source, version, spec["roots"], spec["keep"])
        target = args.out / f"{version}.subset.json"
        target.write_text(json.dumps(subset, indent=1) + "\n", encoding="utf-8")
        print(f"{target}: {len(subset['$defs'])} definitions")


if __name__ == "__main__":
    main()
