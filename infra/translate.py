"""Translates infra/template.yaml into the plain CloudFormation that AWS would
deploy, offline: expands the Fn::ForEach loops (over the clusters, and over
the functions and metrics of the alarms, nested) as AWS::LanguageExtensions
does (`&{Cluster}` in keys and logical ids becomes the name without its
non-alphanumerics, `${Cluster}` the name), leaving every other intrinsic to
CloudFormation, then runs the SAM translator with an s3:// placeholder for
each function's code. scripts/check-infra lints the result.

With --built, instead lays out in <project> what `sam build` leaves there
(`.aws-sam/build/template.yaml`, each function's code in a directory named
after it, here a stub bootstrap), so that `sam deploy` and `sam package` can
run offline from <project> without compiling the functions.

With --parameters FILE (a JSON object of parameter values), translates
with those values instead of the ones below (the pseudo parameters stay):
the CDK equivalence test translates with each of its parameter sets.

usage: python infra/translate.py [--parameters FILE] <template> <output.json>
       python infra/translate.py --built <template> <project>
"""

import json
import sys

import copy
import re

from pathlib import Path

from samcli.yamlhelper import yaml_dump, yaml_parse
from samtranslator.translator.transform import transform

# Parameter values that exercise every branch: two clusters (one with a
# hyphen), a JWT authorizer and a task role.
PARAMETERS = {
    "Clusters": "default,team-a",
    "DefaultCluster": "default",
    "Subnets": "subnet-0123456789abcdef0",
    "SecurityGroups": "sg-0123456789abcdef0",
    "ApiAuth": "JWT",
    "JwtIssuer": "https://issuer.example.com",
    "JwtAudience": "flotilla",
    "TaskRoleArn": "arn:aws:iam::123456789012:role/flotilla-jobs",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "flotilla",
    "AWS::Partition": "aws",
}


def substitute(value, identifier, name):
    """`value` with the loop identifier replaced by `name` everywhere."""
    alnum = re.sub(r"[^A-Za-z0-9]", "", name)

    def text(s):
        return s.replace("&{" + identifier + "}", alnum).replace("${" + identifier + "}", name)

    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return name
        out = {text(k): substitute(v, identifier, name) for k, v in value.items()}
        # Fn::GetAtt and Ref of a logical id made with Fn::Sub are language
        # extensions; once substituted they are a plain Fn::GetAtt and Ref.
        target = out.get("Fn::GetAtt")
        if isinstance(target, list) and plain_sub(target[0]):
            out["Fn::GetAtt"] = [plain_sub(target[0]), target[1]]
        if plain_sub(out.get("Ref")):
            out["Ref"] = plain_sub(out["Ref"])
        return out
    if isinstance(value, list):
        return [substitute(v, identifier, name) for v in value]
    if isinstance(value, str):
        return text(value)
    return value


def plain_sub(value):
    """The string of an `Fn::Sub` with nothing left to substitute, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        text = value["Fn::Sub"]
        if isinstance(text, str) and "${" not in text:
            return text
    return None


def expand_for_each(section, parameters):
    """Expands every `Fn::ForEach::<loop>` of a template section."""
    out = {}
    for key, value in section.items():
        if not key.startswith("Fn::ForEach::"):
            out[key] = value
            continue
        identifier, collection, fragment = value
        if isinstance(collection, dict) and "Ref" in collection:
            names = [n.strip() for n in parameters[collection["Ref"]].split(",") if n.strip()]
        else:
            names = collection
        for name in names:
            # A loop inside the fragment is expanded once its own identifier
            # is the only one left.
            made = expand_for_each(substitute(copy.deepcopy(fragment), identifier, name), parameters)
            for k, v in made.items():
                if k in out:
                    raise ValueError(f"{key} makes {k} twice: names must differ in more than punctuation")
                out[k] = v
    return out


class NoManagedPolicies:
    """The template names no managed policy; looking one up is an error."""

    def load(self):
        raise RuntimeError("the template must not depend on AWS managed policy names")


def main(source, target, given=None):
    if given is not None:
        pseudo = {k: v for k, v in PARAMETERS.items() if k.startswith("AWS::")}
        PARAMETERS.clear()
        PARAMETERS.update(pseudo)
        PARAMETERS.update(given)
    with open(source, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    expanded = copy.deepcopy(template)
    for section in ("Resources", "Outputs", "Conditions"):
        if section in expanded:
            expanded[section] = expand_for_each(expanded[section], PARAMETERS)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"
    for resource in expanded["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://flotilla-artifacts/code.zip"
    parameters = {k: v for k, v in PARAMETERS.items() if not k.startswith("AWS::")}
    translated = transform(expanded, parameters, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as f:
        json.dump(translated, f, indent=1, sort_keys=True)
    print(f"{source} → {target}: {len(translated['Resources'])} resources")


def built(source, project):
    """The layout `sam build` leaves in `project`, with stub function code."""
    with open(source, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    build = Path(project) / ".aws-sam" / "build"
    for logical_id, resource in template["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            code = build / logical_id
            code.mkdir(parents=True, exist_ok=True)
            (code / "bootstrap").write_text("#!/bin/sh\n", encoding="utf-8")
            resource["Properties"]["CodeUri"] = logical_id
    (build / "template.yaml").write_text(yaml_dump(template), encoding="utf-8")
    print(f"{source} → {build}/template.yaml, as sam build leaves it")


if __name__ == "__main__":
    if sys.argv[1] == "--built":
        built(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--parameters":
        with open(sys.argv[2], encoding="utf-8") as f:
            main(sys.argv[3], sys.argv[4], json.load(f))
    else:
        main(sys.argv[1], sys.argv[2])
