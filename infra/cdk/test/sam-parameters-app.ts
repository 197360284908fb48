/**
 * A CDK app whose Flotilla is configured from SAM parameter values: the
 * repository's tests synthesize it with the values they translate
 * infra/template.yaml with, and compare the two templates resource by
 * resource. Every parameter of the template is read here (an unknown one
 * fails), so a parameter added to the template without a prop fails too.
 *
 * Context: `parameters`, the path of a JSON object of parameter values
 * (strings, as CloudFormation takes them); `stackName` (default flotilla);
 * `codeBucket` and `codeKey`, where the functions' code is (default a
 * placeholder, as the SAM translation's).
 */
import * as fs from 'fs';
import { App, DefaultStackSynthesizer, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Flotilla, FlotillaAuth, FlotillaCode, FlotillaProps } from '../lib';

/** The SAM template's parameters and their defaults. */
const DEFAULTS: Record<string, string | undefined> = {
  Clusters: 'default',
  DefaultCluster: 'default',
  SubmitMaxConcurrency: '5',
  Subnets: undefined,
  SecurityGroups: undefined,
  AssignPublicIp: 'false',
  TaskRoleArn: '',
  LogRetentionDays: '30',
  LogArchiveDays: '90',
  PriceTable: '',
  FunctionLogRetentionDays: '30',
  ApiAuth: 'IAM',
  JwtIssuer: '',
  JwtAudience: '',
  MaxAttempts: '3',
  MaxMemoryMb: '30720',
  RequeueAfterMinutes: '5',
  ReconcileAfterMinutes: '10',
  RetrySchedule: 'rate(1 minute)',
  AwsConnectTimeoutMs: '3000',
  AwsAttemptTimeoutMs: '10000',
  AwsOperationTimeoutMs: '20000',
  ServerMode: 'prod',
  CorsAllowedOrigins: '',
  SecretsPrefix: 'flotilla/',
  IdentityClaims: 'email,sub',
  Admins: '',
  AdminGroup: '',
  CreateUserPool: 'false',
  UiClientId: '',
  UiScopes: 'openid email',
  AlarmTopicArn: '',
  Tracing: 'PassThrough',
  ApiThrottlingBurstLimit: '1000',
  ApiThrottlingRateLimit: '500',
  ApiReservedConcurrency: '',
  SubmitReservedConcurrency: '',
  StatusReservedConcurrency: '',
  RetryReservedConcurrency: '',
};

const app = new App();
const file = app.node.tryGetContext('parameters');
const given: Record<string, string> = file ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
for (const name of Object.keys(given)) {
  if (!(name in DEFAULTS) && !name.startsWith('AWS::')) {
    throw new Error(`${name} is no parameter of the SAM template this app knows`);
  }
}
const p = (name: string): string => {
  const value = given[name] ?? DEFAULTS[name];
  if (value === undefined) {
    throw new Error(`give the parameter ${name}`);
  }
  return value;
};
const list = (name: string) =>
  p(name)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
const num = (name: string) => Number(p(name));
const optional = (name: string) => (p(name) === '' ? undefined : num(name));

const stack = new Stack(app, 'Flotilla', {
  stackName: app.node.tryGetContext('stackName') ?? 'flotilla',
  env: { account: given['AWS::AccountId'] ?? '123456789012', region: given['AWS::Region'] ?? 'us-east-1' },
  analyticsReporting: false,
  synthesizer: new DefaultStackSynthesizer({ generateBootstrapVersionRule: false }),
});
const subnets = list('Subnets');
const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
  vpcId: 'vpc-0123456789abcdef0',
  availabilityZones: subnets.map((_, i) => `us-east-1${'abcdef'[i % 6]}`),
  privateSubnetIds: subnets,
});
const auth =
  p('CreateUserPool') === 'true'
    ? FlotillaAuth.userPool()
    : p('ApiAuth') === 'JWT'
      ? FlotillaAuth.jwt({ issuer: p('JwtIssuer'), audience: list('JwtAudience'), uiClientId: p('UiClientId') || undefined })
      : FlotillaAuth.iam();
const bucket = s3.Bucket.fromBucketName(stack, 'Code', app.node.tryGetContext('codeBucket') ?? 'flotilla-artifacts');
const codeKey = app.node.tryGetContext('codeKey') ?? 'code.zip';
const code = lambda.Code.fromBucket(bucket, codeKey);
const props: FlotillaProps = {
  clusters: list('Clusters').map((name) => ({ name, maxConcurrency: num('SubmitMaxConcurrency') })),
  defaultCluster: p('DefaultCluster'),
  vpc,
  securityGroups: list('SecurityGroups').map((id, i) => ec2.SecurityGroup.fromSecurityGroupId(stack, `Group${i}`, id)),
  assignPublicIp: p('AssignPublicIp') === 'true',
  taskRole: p('TaskRoleArn') ? iam.Role.fromRoleArn(stack, 'TaskRole', p('TaskRoleArn')) : undefined,
  logRetention: num('LogRetentionDays') as logs.RetentionDays,
  logArchiveDays: num('LogArchiveDays'),
  functionLogRetention: num('FunctionLogRetentionDays') as logs.RetentionDays,
  priceTable: p('PriceTable') || undefined,
  auth,
  identityClaims: list('IdentityClaims'),
  admins: list('Admins'),
  adminGroup: p('AdminGroup') || undefined,
  uiScopes: p('UiScopes').split(' ').filter((s) => s !== ''),
  maxAttempts: num('MaxAttempts'),
  maxMemoryMb: num('MaxMemoryMb'),
  requeueAfter: Duration.minutes(num('RequeueAfterMinutes')),
  reconcileAfter: Duration.minutes(num('ReconcileAfterMinutes')),
  retrySchedule: events.Schedule.expression(p('RetrySchedule')),
  awsTimeouts: {
    connect: Duration.millis(num('AwsConnectTimeoutMs')),
    attempt: Duration.millis(num('AwsAttemptTimeoutMs')),
    operation: Duration.millis(num('AwsOperationTimeoutMs')),
  },
  serverMode: p('ServerMode'),
  corsAllowedOrigins: list('CorsAllowedOrigins'),
  secretsPrefix: p('SecretsPrefix'),
  alarmTopic: p('AlarmTopicArn') ? sns.Topic.fromTopicArn(stack, 'Alarms', p('AlarmTopicArn')) : undefined,
  tracing: p('Tracing') === 'Active' ? lambda.Tracing.ACTIVE : lambda.Tracing.PASS_THROUGH,
  apiThrottlingBurstLimit: num('ApiThrottlingBurstLimit'),
  apiThrottlingRateLimit: num('ApiThrottlingRateLimit'),
  reservedConcurrency: {
    api: optional('ApiReservedConcurrency'),
    submit: optional('SubmitReservedConcurrency'),
    status: optional('StatusReservedConcurrency'),
    retry: optional('RetryReservedConcurrency'),
  },
  code: FlotillaCode.fromCode({ api: code, submit: code, status: code, retry: code }),
};
new Flotilla(stack, 'Flotilla', props).addOutputs();
