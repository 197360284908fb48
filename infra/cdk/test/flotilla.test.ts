/**
 * The construct's props, checked on what it synthesizes (aws-cdk-lib's
 * assertions), run with Node's own test runner: `npm test`.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Flotilla, FlotillaAuth, FlotillaCode, FlotillaProps, PUBLIC_ROUTES } from '../lib';

function stack(): Stack {
  return new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'us-east-1' } });
}

function vpcOf(s: Stack): ec2.IVpc {
  return ec2.Vpc.fromVpcAttributes(s, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a'],
    privateSubnetIds: ['subnet-0123456789abcdef0'],
  });
}

const code = (s: Stack) => {
  const c = lambda.Code.fromBucket(s3.Bucket.fromBucketName(s, 'Artifacts', 'artifacts'), 'code.zip');
  return FlotillaCode.fromCode({ api: c, submit: c, status: c, retry: c });
};

function synth(props: Partial<FlotillaProps> = {}, extra?: (s: Stack, f: Flotilla) => void): Template {
  const s = stack();
  const f = new Flotilla(s, 'Flotilla', {
    clusters: [{ name: 'default' }],
    vpc: vpcOf(s),
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(s, 'Group', 'sg-0123456789abcdef0')],
    code: code(s),
    ...props,
  });
  extra?.(s, f);
  return Template.fromStack(s);
}

function throwsOn(props: Partial<FlotillaProps>, message: RegExp): void {
  assert.throws(() => synth(props), message);
}

describe('clusters', () => {
  it('gives each cluster its queue, dead-letter queue, ECS cluster and a submit mapping at its concurrency', () => {
    const t = synth({ clusters: [{ name: 'default' }, { name: 'team-a', maxConcurrency: 20 }] });
    t.resourceCountIs('AWS::SQS::Queue', 5); // two queues, two dead-letter queues, the status one
    t.resourceCountIs('AWS::ECS::Cluster', 2);
    t.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    const name = (suffix: string) => ({ 'Fn::Join': ['', [{ Ref: 'AWS::StackName' }, suffix]] });
    t.hasResourceProperties('AWS::SQS::Queue', {
      QueueName: name('-team-a'),
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: Match.anyValue(), maxReceiveCount: 10 },
    });
    t.hasResourceProperties('AWS::SQS::Queue', { QueueName: name('-dlq-team-a'), MessageRetentionPeriod: 1209600 });
    t.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterName: name('-team-a'),
      CapacityProviders: ['FARGATE', 'FARGATE_SPOT'],
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      ScalingConfig: { MaximumConcurrency: 20 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 10,
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 5 } });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ FLOTILLA_CLUSTERS: 'default,team-a', FLOTILLA_DEFAULT_CLUSTER: 'default' }) },
    });
  });

  it('refuses a default cluster that is not a cluster, names that collide, and concurrency out of range', () => {
    throwsOn({ clusters: [{ name: 'a' }], defaultCluster: 'b' }, /defaultCluster "b" must be one of the clusters \(a\)/);
    throwsOn({ clusters: [{ name: 'team-a' }, { name: 'teama' }] }, /differ only in hyphens/);
    throwsOn({ clusters: [{ name: 'a_b' }] }, /only letters, digits and hyphens/);
    throwsOn({ clusters: [{ name: 'a', maxConcurrency: 1 }] }, /maxConcurrency must be a whole number from 2 to 1000/);
    throwsOn({ clusters: [] }, /at least one cluster/);
  });
});

describe('auth', () => {
  it('with IAM auth, every route but the public ones needs a SigV4 signature and there is no authorizer', () => {
    const t = synth({ auth: FlotillaAuth.iam() });
    t.resourceCountIs('AWS::ApiGatewayV2::Authorizer', 0);
    t.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: '$default', AuthorizationType: 'AWS_IAM' });
    t.resourceCountIs('AWS::ApiGatewayV2::Route', PUBLIC_ROUTES.length + 1);
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ FLOTILLA_API_AUTH: 'IAM', FLOTILLA_OAUTH_ISSUER: '' }) },
    });
  });

  it('with JWT auth, the default route takes a JWT from the issuer for the audiences', () => {
    const t = synth({ auth: FlotillaAuth.jwt({ issuer: 'https://id.example.com', audience: ['a', 'b'], uiClientId: 'ui' }) });
    t.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: 'https://id.example.com', Audience: ['a', 'b'] },
    });
    t.hasResourceProperties('AWS::ApiGatewayV2::Route', {
      RouteKey: '$default',
      AuthorizationType: 'JWT',
      AuthorizerId: { Ref: Match.stringLikeRegexp('JwtAuthorizer') },
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({ FLOTILLA_API_AUTH: 'JWT', FLOTILLA_OAUTH_ISSUER: 'https://id.example.com', FLOTILLA_OAUTH_CLIENT_ID: 'ui' }),
      },
    });
    t.resourceCountIs('AWS::Cognito::UserPool', 0);
  });

  it('refuses JWT auth without an https issuer or with no audience', () => {
    throwsOn({ auth: FlotillaAuth.jwt({ issuer: 'http://id.example.com', audience: ['a'] }) }, /https:\/\/ URL/);
    throwsOn({ auth: FlotillaAuth.jwt({ issuer: 'https://id.example.com', audience: [] }) }, /accepted audiences/);
  });

  it('with a user pool, makes the pool, its domain and the UI client and takes their JWTs', () => {
    const t = synth({ auth: FlotillaAuth.userPool() });
    t.resourceCountIs('AWS::Cognito::UserPool', 1);
    t.resourceCountIs('AWS::Cognito::UserPoolDomain', 1);
    t.hasResourceProperties('AWS::Cognito::UserPoolClient', { AllowedOAuthFlows: ['code'], GenerateSecret: false });
    t.hasResource('AWS::Cognito::UserPool', { DeletionPolicy: 'Retain' });
    t.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      JwtConfiguration: { Audience: [{ Ref: Match.stringLikeRegexp('UserPoolClient') }] },
    });
  });
});

describe('alarms', () => {
  const alarms = (t: Template) => Object.values(t.findResources('AWS::CloudWatch::Alarm'));

  it('notify the topic, when they fire and when they clear, when one is given', () => {
    let topicArn: string | undefined;
    const s = stack();
    const topic = new sns.Topic(s, 'Alarms');
    topicArn = s.resolve(topic.topicArn);
    new Flotilla(s, 'Flotilla', {
      clusters: [{ name: 'default' }, { name: 'gpu' }],
      vpc: vpcOf(s),
      code: code(s),
      alarmTopic: topic,
    });
    const all = alarms(Template.fromStack(s));
    // Errors and throttles of four functions, a dead-letter queue per cluster, the status one.
    assert.equal(all.length, 8 + 2 + 1);
    for (const a of all) {
      assert.deepEqual(a.Properties.AlarmActions, [topicArn]);
      assert.deepEqual(a.Properties.OKActions, [topicArn]);
      assert.equal(a.Properties.Threshold, 0);
      assert.equal(a.Properties.TreatMissingData, 'notBreaching');
    }
  });

  it('have no actions without a topic', () => {
    for (const a of alarms(synth())) {
      assert.equal(a.Properties.AlarmActions, undefined);
      assert.equal(a.Properties.OKActions, undefined);
    }
  });
});

describe('network', () => {
  it('makes a security group with only outbound traffic when none is given, and runs tasks in the selected subnets', () => {
    const s = stack();
    new Flotilla(s, 'Flotilla', { clusters: [{ name: 'default' }], vpc: vpcOf(s), code: code(s), assignPublicIp: true });
    const t = Template.fromStack(s);
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      VpcId: 'vpc-0123456789abcdef0',
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: '-1' }],
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          FLOTILLA_SUBNETS: 'subnet-0123456789abcdef0',
          FLOTILLA_SECURITY_GROUPS: { 'Fn::GetAtt': [Match.stringLikeRegexp('TaskSecurityGroup'), 'GroupId'] },
          FLOTILLA_ASSIGN_PUBLIC_IP: 'true',
        }),
      },
    });
  });
});

describe('what an app wires to', () => {
  it('can subscribe to the run-state bus and read the API URL', () => {
    const t = synth({}, (s, f) => {
      new events.Rule(s, 'Runs', {
        eventBus: f.runsBus,
        eventPattern: { detailType: ['Flotilla Run State Change'] },
        targets: [new targets.SqsQueue(new sqs.Queue(s, 'Q'))],
      });
      f.addOutputs();
    });
    t.hasResourceProperties('AWS::Events::Rule', { EventBusName: { Ref: Match.stringLikeRegexp('RunsBus') } });
    t.hasOutput('ApiUrl', {});
    t.hasOutput('TableName', { Value: { Ref: Match.stringLikeRegexp('Table') } });
  });

  it('allows one Flotilla per stack', () => {
    const s = stack();
    const vpc = vpcOf(s);
    const c = code(s);
    new Flotilla(s, 'One', { clusters: [{ name: 'default' }], vpc, code: c });
    assert.throws(() => new Flotilla(s, 'Two', { clusters: [{ name: 'default' }], vpc, code: c }), /one Flotilla per stack/);
  });
});

describe('code', () => {
  const dirWith = (files: string[]) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-code-'));
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.writeFileSync(path.join(dir, f), f);
    }
    return dir;
  };

  it("takes what cargo lambda build left: each binary's zip, else its bootstrap directory", () => {
    const dir = dirWith(['api/bootstrap.zip', 'api/bootstrap', 'submit/bootstrap', 'status/bootstrap', 'retry/bootstrap']);
    const s = stack();
    new Flotilla(s, 'Flotilla', { clusters: [{ name: 'default' }], vpc: vpcOf(s), code: FlotillaCode.fromCargoLambdaOutput(dir) });
    const fns = Template.fromStack(s).findResources('AWS::Lambda::Function');
    // An asset each (their contents differ), uploaded as a zip.
    const keys = new Set(Object.values(fns).map((f) => f.Properties.Code.S3Key as string));
    assert.equal(keys.size, 4, JSON.stringify([...keys]));
    assert.ok([...keys].every((k) => k.endsWith('.zip')), JSON.stringify([...keys]));
    const binaries = Object.values(fns).map((f) => f.Metadata.BuildProperties.Binary).sort();
    assert.deepEqual(binaries, ['api', 'retry', 'status', 'submit']);
  });

  it('builds each binary once at synth time with cargo-lambda, each function getting its own', () => {
    // A stand-in cargo-lambda that writes a bootstrap naming the package it builds.
    const workspace = dirWith(['Cargo.toml']);
    const fake = path.join(workspace, 'fake-cargo-lambda');
    fs.writeFileSync(
      fake,
      [
        '#!/bin/sh',
        'while [ $# -gt 0 ]; do case "$1" in -p) p="$2"; shift;; --lambda-dir) d="$2"; shift;; esac; shift; done',
        'b="${p#flotilla-}"; mkdir -p "$d/$b" && echo "$p" > "$d/$b/bootstrap"',
        `echo "$p" >> "${workspace}/built.log"`,
      ].join('\n'),
      { mode: 0o755 },
    );
    const s = stack();
    new Flotilla(s, 'Flotilla', {
      clusters: [{ name: 'default' }],
      vpc: vpcOf(s),
      code: FlotillaCode.cargoLambdaBuild({ workspace, cargoLambda: fake }),
    });
    const fns = Object.values(Template.fromStack(s).findResources('AWS::Lambda::Function'));
    assert.equal(new Set(fns.map((f) => f.Properties.Code.S3Key)).size, 4);
    const built = fs.readFileSync(path.join(workspace, 'built.log'), 'utf8').trim().split('\n').sort();
    assert.deepEqual(built, ['flotilla-api', 'flotilla-retry', 'flotilla-status', 'flotilla-submit']);
  });

  it('fails synthesis naming the missing binary and how to build it', () => {
    const dir = dirWith(['api/bootstrap']);
    assert.throws(
      () => synth({ code: FlotillaCode.fromCargoLambdaOutput(dir) }),
      /no submit function in .*cargo lambda build --release --arm64/,
    );
  });
});
