"""Translates infra/template.yaml into the plain CloudFormation that AWS would
deploy, offline: expands the Fn::ForEach over the clusters as
AWS::LanguageExtensions does (`&{Cluster}` in keys and logical ids becomes the
name without its non-alphanumerics, `${Cluster}` the name), leaving every other
intrinsic to CloudFormation, then runs the SAM translator with an s3://
placeholder for each function's code. scripts/check-infra lints the result.

usage: python infra/translate.py <template> <output.json>
"""

import json
import sys

import copy
import re

from samcli.yamlhelper import yaml_parse
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
        # Fn::GetAtt of a logical id made with Fn::Sub is a language
        # extension; once substituted it is a plain Fn::GetAtt.
        target = out.get("Fn::GetAtt")
        if isinstance(target, list) and isinstance(target[0], dict) and "Fn::Sub" in target[0]:
            logical_id = target[0]["Fn::Sub"]
            if isinstance(logical_id, str) and "${" not in logical_id:
                out["Fn::GetAtt"] = [logical_id, target[1]]
        return out
    if isinstance(value, list):
        return [substitute(v, identifier, name) for v in value]
    if isinstance(value, str):
        return text(value)
    return value


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
            for k, v in substitute(copy.deepcopy(fragment), identifier, name).items():
                if k in out:
                    raise ValueError(f"{key} makes {k} twice: cluster names must differ in more than punctuation")
                out[k] = v
    return out


class NoManagedPolicies:
    """The template names no managed policy; looking one up is an error."""

    def load(self):
        raise RuntimeError("the template must not depend on AWS managed policy names")


def main(source, target):
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
