/**
 * The `Flotilla` construct: the whole service (HTTP API, the four functions,
 * the table, a queue, dead-letter queue, ECS cluster and submit mapping per
 * cluster, the status rule, the retry schedule, the runs' bus, logs, alarms)
 * as `infra/template.yaml` defines it, resource for resource.
 *
 * It is written with CloudFormation-level (L1) resources on purpose: the
 * SAM template and this construct must synthesize the same resources,
 * properties, IAM actions, environment variables and event wiring, and the
 * repository's equivalence test compares them resource by resource. Each
 * resource's construct id is the SAM template's logical id (after the SAM
 * translator and `Fn::ForEach`), so the two can be lined up by name.
 *
 * What the template's parameters are, the props are, typed: CDK objects for
 * the network, the task role and the alarm topic, durations and retention
 * enums for times. What the template checks with `Rules` before a deploy,
 * the construct checks at synth time.
 */
import {
  Aws,
  CfnOutput,
  Duration,
  Fn,
  Names,
  RemovalPolicy,
  Stack,
  Token,
} from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { BINARIES, FlotillaBinary, FlotillaCode } from './code';

/** A Flotilla cluster: its own queue, dead-letter queue, ECS cluster and submit concurrency. */
export interface FlotillaCluster {
  /** Its name: letters, digits and hyphens. */
  readonly name: string;
  /**
   * Concurrent submit invocations for its queue (the SQS event source's
   * maximum concurrency), 2 to 1000.
   * @default 5
   */
  readonly maxConcurrency?: number;
}

/** How callers authenticate to the HTTP API. */
export abstract class FlotillaAuth {
  /** Requests signed with SigV4 (IAM); the caller is the IAM principal. */
  public static iam(): FlotillaAuth {
    return new IamAuth();
  }

  /** A bearer JWT from your identity provider. */
  public static jwt(options: JwtAuthOptions): FlotillaAuth {
    return new JwtAuth(options);
  }

  /**
   * A Cognito user pool made with the stack (its hosted sign-in domain and
   * a client for the web UI); the API takes its JWTs.
   */
  public static userPool(): FlotillaAuth {
    return new UserPoolAuth();
  }

  /** @internal */
  public abstract readonly kind: 'IAM' | 'JWT' | 'USER_POOL';
}

/** A JWT issuer and what the API takes from its tokens. */
export interface JwtAuthOptions {
  /** The issuer URL (https://…). */
  readonly issuer: string;
  /** The accepted audiences (client ids); at least one. */
  readonly audience: string[];
  /**
   * The web UI's client id at the issuer (a public client allowed the
   * authorization-code flow with the API's URL as a callback); the UI then
   * signs users in with PKCE.
   * @default the UI asks for a token to paste
   */
  readonly uiClientId?: string;
}

class IamAuth extends FlotillaAuth {
  public readonly kind = 'IAM' as const;
}

class JwtAuth extends FlotillaAuth {
  public readonly kind = 'JWT' as const;
  constructor(public readonly options: JwtAuthOptions) {
    super();
  }
}

class UserPoolAuth extends FlotillaAuth {
  public readonly kind = 'USER_POOL' as const;
}

/** The AWS SDK clients' time limits in the functions. */
export interface AwsClientTimeouts {
  /** @default 3 seconds */
  readonly connect?: Duration;
  /** One attempt of a request, at most `operation`. @default 10 seconds */
  readonly attempt?: Duration;
  /** A request, retries included; under the functions' 30 s. @default 20 seconds */
  readonly operation?: Duration;
}

/** Reserved concurrency per function; none where unset. */
export interface FlotillaReservedConcurrency {
  readonly api?: number;
  readonly submit?: number;
  readonly status?: number;
  readonly retry?: number;
}

/** Everything the SAM template's parameters offer, typed. */
export interface FlotillaProps {
  /** The clusters; the first is the default unless `defaultCluster` says otherwise. */
  readonly clusters: FlotillaCluster[];
  /**
   * Cluster of runs whose request and definition name none.
   * @default the first cluster
   */
  readonly defaultCluster?: string;
  /** The VPC the Fargate tasks run in. */
  readonly vpc: ec2.IVpc;
  /**
   * Its subnets the tasks use (they must reach the image registry).
   * @default the VPC's private subnets (CDK's default selection)
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the tasks.
   * @default one made in the VPC, allowing all outbound traffic and no inbound
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
  /** Give tasks a public IP (public subnets without a NAT gateway). @default false */
  readonly assignPublicIp?: boolean;
  /** The role the jobs themselves run with. @default none */
  readonly taskRole?: iam.IRole;
  /** How long the runs' logs stay in CloudWatch Logs. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /** Days the Kubernetes clusters' archived run logs stay in S3. @default 90 */
  readonly logArchiveDays?: number;
  /** How long the functions' logs and the API's access logs stay. @default one month */
  readonly functionLogRetention?: logs.RetentionDays;
  /**
   * A price table (JSON, as shared/src/domain/fargate_prices.json) the
   * estimated costs use instead of Fargate's published rates.
   * @default Fargate's published rates
   */
  readonly priceTable?: string;
  /** How callers authenticate. @default FlotillaAuth.iam() */
  readonly auth?: FlotillaAuth;
  /**
   * With JWT auth, the claims that name a caller, first set wins.
   * @default ['email', 'sub']
   */
  readonly identityClaims?: string[];
  /** Callers who may stop anyone's run and change anyone's definition. @default none */
  readonly admins?: string[];
  /** With JWT auth, the cognito:groups group whose members are admins. @default none */
  readonly adminGroup?: string;
  /** Scopes the web UI asks the issuer for. @default ['openid', 'email'] */
  readonly uiScopes?: string[];
  /** Attempts per run after infrastructure failures, the first included. @default 3 */
  readonly maxAttempts?: number;
  /** The most memory (MB) a run may grow to after running out of memory. @default 30720 */
  readonly maxMemoryMb?: number;
  /** Age after which a QUEUED run never launched is enqueued again. @default 5 minutes */
  readonly requeueAfter?: Duration;
  /** Quiet time after which a PENDING or RUNNING run is reconciled with ECS. @default 10 minutes */
  readonly reconcileAfter?: Duration;
  /** How often the retry function sweeps. @default every minute */
  readonly retrySchedule?: events.Schedule;
  /** The functions' AWS clients' time limits. */
  readonly awsTimeouts?: AwsClientTimeouts;
  /** FLOTILLA_SERVER_MODE in every run. @default 'prod' */
  readonly serverMode?: string;
  /** Origins a browser may call the API from; ['*'] allows any. @default none */
  readonly corsAllowedOrigins?: string[];
  /** Runs may take secrets only from SSM parameters and secrets under this prefix. @default 'flotilla/' */
  readonly secretsPrefix?: string;
  /** The SNS topic the alarms notify, both ways. @default alarms without actions */
  readonly alarmTopic?: sns.ITopic;
  /** X-Ray tracing of the functions. @default lambda.Tracing.PASS_THROUGH */
  readonly tracing?: lambda.Tracing;
  /** Requests the HTTP API takes in a burst before it answers 429. @default 1000 */
  readonly apiThrottlingBurstLimit?: number;
  /** Requests per second the HTTP API takes, sustained. @default 500 */
  readonly apiThrottlingRateLimit?: number;
  /** Reserved concurrency per function. @default none */
  readonly reservedConcurrency?: FlotillaReservedConcurrency;
  /** The functions' code. @default FlotillaCode.fromCargoLambdaOutput() */
  readonly code?: FlotillaCode;
}

const CLUSTER_NAME = /^[A-Za-z0-9-]+$/;
const SECRETS_PREFIX = /^[A-Za-z0-9_.\-/]+$/;
const ALARM_TOPIC = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$/;

/** The function ids of the template, by binary. */
const FUNCTION_ID: Record<FlotillaBinary, string> = {
  api: 'Api',
  submit: 'Submit',
  status: 'Status',
  retry: 'Retry',
};

const DESCRIPTION: Record<FlotillaBinary, string> = {
  api: "Flotilla's HTTP API (API Gateway → the router)",
  submit: 'Launches QUEUED runs as ECS tasks (SQS, one queue per cluster)',
  status: 'Records ECS task state changes on their runs',
  retry:
    "Requeues NEEDS_RETRY runs, re-enqueues lost ones, stops runs past their deadline, reconciles runs with ECS, reads Kubernetes clusters' pods",
};

const TIMEOUT_SECONDS: Record<FlotillaBinary, number> = { api: 30, submit: 60, status: 30, retry: 120 };

/** The routes API Gateway lets through without a credential. */
export const PUBLIC_ROUTES: readonly string[] = [
  'GET /',
  'GET /ui/{proxy+}',
  'GET /api/ui-config',
  'GET /api/openapi.json',
  'GET /api/v1/health',
  'GET /api/v6/health',
  'PUT /api/v1/{run_id}/status',
  'PUT /api/v6/{run_id}/status',
];

/** The table's global secondary indexes: name, partition key, sort key, projection. */
const INDEXES: readonly [string, string, string, 'ALL' | 'KEYS_ONLY'][] = [
  ['runs_by_queued_at', 'runs_pk', 'queued_key', 'ALL'],
  ['runs_by_started_at', 'runs_pk', 'started_key', 'ALL'],
  ['runs_by_finished_at', 'runs_pk', 'finished_key', 'ALL'],
  ['runs_by_definition', 'def_pk', 'queued_key', 'ALL'],
  ['runs_by_definition_started_at', 'def_pk', 'started_key', 'ALL'],
  ['runs_by_definition_finished_at', 'def_pk', 'finished_key', 'ALL'],
  ['runs_by_status', 'status_pk', 'queued_key', 'ALL'],
  ['runs_by_status_started_at', 'status_pk', 'started_key', 'ALL'],
  ['runs_by_status_finished_at', 'status_pk', 'finished_key', 'ALL'],
  ['runs_by_cluster', 'cluster_pk', 'queued_key', 'ALL'],
  ['runs_by_owner', 'owner_pk', 'queued_key', 'ALL'],
  ['definitions_by_alias', 'defs_pk', 'alias', 'ALL'],
  ['catalog', 'catalog_pk', 'catalog_sk', 'ALL'],
  ['runs_waiting', 'waiting_pk', 'waiting_key', 'KEYS_ONLY'],
  ['runs_started_by_cluster', 'cluster_pk', 'started_key', 'KEYS_ONLY'],
];

const ACCESS_LOG_FORMAT = [
  '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",',
  '"caller":"$context.identity.userArn","requestTime":"$context.requestTime",',
  '"method":"$context.httpMethod","path":"$context.path",',
  '"routeKey":"$context.routeKey","status":"$context.status",',
  '"protocol":"$context.protocol","responseLength":"$context.responseLength",',
  '"latency":"$context.responseLatency",',
  '"integrationLatency":"$context.integrationLatency",',
  '"integrationStatus":"$context.integrationStatus",',
  '"integrationError":"$context.integrationErrorMessage",',
  '"authorizerError":"$context.authorizer.error",',
  '"error":"$context.error.message"}',
].join(' ');

/** `name` without its non-alphanumerics, as `&{Cluster}` in the template's logical ids. */
function alnum(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, '');
}

function fail(what: string): never {
  throw new Error(`Flotilla: ${what}`);
}

function checkNumber(what: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    fail(`${what} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, not ${value}`);
  }
  return value;
}

/** The whole Flotilla service in a stack of your app. */
export class Flotilla extends Construct {
  /** The API's base URL (e.g. `${apiUrl}api/v6/task`). */
  public readonly apiUrl: string;
  /** The EventBridge bus carrying "Flotilla Run State Change" events. */
  public readonly runsBus: events.IEventBus;
  /** The DynamoDB table of runs, their events and definitions. */
  public readonly table: dynamodb.ITable;
  /** The CloudWatch Logs group of the runs' output. */
  public readonly taskLogGroup: logs.ILogGroup;
  /** The queue of the ECS task state changes the status function could not record. */
  public readonly statusDeadLetterQueue: sqs.IQueue;
  /** Each cluster's queue, by cluster name. */
  public readonly queues: Record<string, sqs.IQueue>;
  /** Each cluster's ECS cluster, by cluster name. */
  public readonly ecsClusters: Record<string, ecs.ICluster>;
  /** The four functions, by binary. */
  public readonly functions: Record<FlotillaBinary, lambda.IFunction>;
  /** The user pool, with `FlotillaAuth.userPool()`. */
  public readonly userPool?: cognito.IUserPool;

  private readonly outputs: [string, string, string][];

  constructor(scope: Construct, id: string, props: FlotillaProps) {
    super(scope, id);
    const stack = Stack.of(this);
    if (stack.node.findAll().some((c) => c !== this && c instanceof Flotilla)) {
      fail('one Flotilla per stack: its queues, clusters and bus are named after the stack');
    }

    // ----- what the template's parameters and Rules check -------------------
    const clusters = props.clusters.map((c) => ({
      name: c.name,
      maxConcurrency: checkNumber(`cluster ${c.name}'s maxConcurrency`, c.maxConcurrency ?? 5, 2, 1000),
    }));
    if (clusters.length === 0) {
      fail('give at least one cluster');
    }
    const byId = new Map<string, string>();
    for (const c of clusters) {
      if (!CLUSTER_NAME.test(c.name)) {
        fail(`cluster name "${c.name}" may have only letters, digits and hyphens`);
      }
      const other = byId.get(alnum(c.name));
      if (other !== undefined) {
        fail(`clusters "${other}" and "${c.name}" differ only in hyphens: their resources would share names`);
      }
      byId.set(alnum(c.name), c.name);
    }
    const defaultCluster = props.defaultCluster ?? clusters[0].name;
    if (!clusters.some((c) => c.name === defaultCluster)) {
      fail(`defaultCluster "${defaultCluster}" must be one of the clusters (${clusters.map((c) => c.name).join(', ')})`);
    }
    const auth = props.auth ?? FlotillaAuth.iam();
    if (auth instanceof JwtAuth) {
      if (!/^https:\/\/.+/.test(auth.options.issuer)) {
        fail(`the JWT issuer must be an https:// URL, not "${auth.options.issuer}"`);
      }
      if (auth.options.audience.length === 0 || auth.options.audience.some((a) => a === '')) {
        fail('with JWT auth, give the accepted audiences (no empty one)');
      }
    }
    const secretsPrefix = props.secretsPrefix ?? 'flotilla/';
    if (!SECRETS_PREFIX.test(secretsPrefix)) {
      fail(`secretsPrefix "${secretsPrefix}" may have only letters, digits and _ . - /`);
    }
    if (props.alarmTopic && !Token.isUnresolved(props.alarmTopic.topicArn) && !ALARM_TOPIC.test(props.alarmTopic.topicArn)) {
      fail(`the alarm topic's ARN "${props.alarmTopic.topicArn}" is not an SNS topic ARN`);
    }
    const logArchiveDays = checkNumber('logArchiveDays', props.logArchiveDays ?? 90, 1);
    const maxAttempts = checkNumber('maxAttempts', props.maxAttempts ?? 3, 1);
    const maxMemoryMb = checkNumber('maxMemoryMb', props.maxMemoryMb ?? 30720, 512, 122880);
    const requeueMinutes = checkNumber('requeueAfter (minutes)', (props.requeueAfter ?? Duration.minutes(5)).toMinutes(), 1);
    const reconcileMinutes = checkNumber('reconcileAfter (minutes)', (props.reconcileAfter ?? Duration.minutes(10)).toMinutes(), 1);
    const timeouts = props.awsTimeouts ?? {};
    const connectMs = checkNumber('awsTimeouts.connect (ms)', (timeouts.connect ?? Duration.seconds(3)).toMilliseconds(), 100, 10000);
    const attemptMs = checkNumber('awsTimeouts.attempt (ms)', (timeouts.attempt ?? Duration.seconds(10)).toMilliseconds(), 100, 25000);
    const operationMs = checkNumber('awsTimeouts.operation (ms)', (timeouts.operation ?? Duration.seconds(20)).toMilliseconds(), 100, 25000);
    const burst = checkNumber('apiThrottlingBurstLimit', props.apiThrottlingBurstLimit ?? 1000, 1);
    const rate = checkNumber('apiThrottlingRateLimit', props.apiThrottlingRateLimit ?? 500, 1);
    const reserved = props.reservedConcurrency ?? {};
    for (const binary of BINARIES) {
      if (reserved[binary] !== undefined) {
        checkNumber(`reservedConcurrency.${binary}`, reserved[binary] as number, 1);
      }
    }
    const tracing = props.tracing ?? lambda.Tracing.PASS_THROUGH;
    if (tracing === lambda.Tracing.DISABLED) {
      fail('tracing is ACTIVE or PASS_THROUGH');
    }
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const functionLogRetention = props.functionLogRetention ?? logs.RetentionDays.ONE_MONTH;
    const code = props.code ?? FlotillaCode.fromCargoLambdaOutput();

    const prefix = `${Aws.STACK_NAME}-`;
    const account = `${Aws.PARTITION}:%s:${Aws.REGION}:${Aws.ACCOUNT_ID}`;
    const arn = (service: string, rest: string) => `arn:${account.replace('%s', service)}:${rest}`;
    const stackUuid = Fn.select(2, Fn.split('/', Aws.STACK_ID));
    const alarmActions = props.alarmTopic ? [props.alarmTopic.topicArn] : undefined;

    // ----- storage ---------------------------------------------------------------
    const attributes = new Set<string>(['PK', 'SK']);
    INDEXES.forEach(([, pk, sk]) => {
      attributes.add(pk);
      attributes.add(sk);
    });
    const table = new dynamodb.CfnTable(this, 'Table', {
      billingMode: 'PAY_PER_REQUEST',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveSpecification: { attributeName: 'expires_at', enabled: true },
      attributeDefinitions: [...attributes].map((a) => ({ attributeName: a, attributeType: 'S' })),
      keySchema: [
        { attributeName: 'PK', keyType: 'HASH' },
        { attributeName: 'SK', keyType: 'RANGE' },
      ],
      globalSecondaryIndexes: INDEXES.map(([indexName, pk, sk, projectionType]) => ({
        indexName,
        keySchema: [
          { attributeName: pk, keyType: 'HASH' },
          { attributeName: sk, keyType: 'RANGE' },
        ],
        projection: { projectionType },
      })),
    });
    table.applyRemovalPolicy(RemovalPolicy.RETAIN);

    const runTokenKey = new secretsmanager.CfnSecret(this, 'RunTokenKey', {
      description: 'Key of the tokens Flotilla runs report their own status with',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });

    const runLogBucket = new s3.CfnBucket(this, 'RunLogBucket', {
      bucketEncryption: {
        serverSideEncryptionConfiguration: [{ serverSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }],
      },
      publicAccessBlockConfiguration: {
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      lifecycleConfiguration: {
        rules: [{ id: 'expire-run-logs', status: 'Enabled', prefix: 'logs/', expirationInDays: logArchiveDays }],
      },
    });

    const runsBus = new events.CfnEventBus(this, 'RunsBus', { name: `${Aws.STACK_NAME}-runs` });

    const taskLogGroup = new logs.CfnLogGroup(this, 'TaskLogGroup', {
      logGroupName: `/flotilla/${Aws.STACK_NAME}/runs`,
      retentionInDays: logRetention,
    });

    // ----- ECS side ------------------------------------------------------------------
    const executionRole = new iam.CfnRole(this, 'TaskExecutionRole', {
      assumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'ecs-tasks.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      },
      policies: [
        {
          policyName: 'pull-images-and-write-logs',
          policyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Effect: 'Allow',
                Action: [
                  'ecr:GetAuthorizationToken',
                  'ecr:BatchCheckLayerAvailability',
                  'ecr:GetDownloadUrlForLayer',
                  'ecr:BatchGetImage',
                ],
                Resource: '*',
              },
              {
                Effect: 'Allow',
                Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
                Resource: taskLogGroup.attrArn,
              },
            ],
          },
        },
        {
          // A run's secrets and its private registry's credential, read by
          // ECS with this role: only under the secrets prefix.
          policyName: 'read-run-secrets',
          policyDocument: {
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: ['ssm:GetParameters'], Resource: arn('ssm', `parameter/${secretsPrefix}*`) },
              {
                Effect: 'Allow',
                Action: ['secretsmanager:GetSecretValue'],
                Resource: arn('secretsmanager', `secret:${secretsPrefix}*`),
              },
            ],
          },
        },
      ],
    });

    // ----- per cluster -------------------------------------------------------------
    const perCluster = clusters.map((c) => {
      const id = alnum(c.name);
      const deadLetters = new sqs.CfnQueue(this, `DeadLetters${id}`, {
        queueName: `${Aws.STACK_NAME}-dlq-${c.name}`,
        messageRetentionPeriod: 1209600,
        sqsManagedSseEnabled: true,
      });
      const queue = new sqs.CfnQueue(this, `Queue${id}`, {
        queueName: `${Aws.STACK_NAME}-${c.name}`,
        // Six times the submit function's timeout, as Lambda recommends.
        visibilityTimeout: 6 * TIMEOUT_SECONDS.submit,
        sqsManagedSseEnabled: true,
        redrivePolicy: { deadLetterTargetArn: deadLetters.attrArn, maxReceiveCount: 10 },
      });
      const cluster = new ecs.CfnCluster(this, `EcsCluster${id}`, {
        clusterName: `${Aws.STACK_NAME}-${c.name}`,
        capacityProviders: ['FARGATE', 'FARGATE_SPOT'],
        defaultCapacityProviderStrategy: [{ capacityProvider: 'FARGATE', weight: 1 }],
      });
      return { ...c, id, deadLetters, queue, cluster };
    });

    // ----- HTTP API ------------------------------------------------------------------
    const httpApi = new apigwv2.CfnApi(this, 'HttpApi', { name: `${Aws.STACK_NAME}-api`, protocolType: 'HTTP' });
    const apiUrl = `https://${httpApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}/`;

    // ----- the optional user pool ------------------------------------------------
    let userPool: cognito.CfnUserPool | undefined;
    let userPoolDomain: cognito.CfnUserPoolDomain | undefined;
    let userPoolClient: cognito.CfnUserPoolClient | undefined;
    if (auth instanceof UserPoolAuth) {
      userPool = new cognito.CfnUserPool(this, 'UserPool', {
        userPoolName: `${Aws.STACK_NAME}-users`,
        usernameAttributes: ['email'],
        autoVerifiedAttributes: ['email'],
        adminCreateUserConfig: { allowAdminCreateUserOnly: true },
        policies: { passwordPolicy: { minimumLength: 12 } },
      });
      userPool.applyRemovalPolicy(RemovalPolicy.RETAIN);
      userPoolDomain = new cognito.CfnUserPoolDomain(this, 'UserPoolDomain', {
        userPoolId: userPool.ref,
        domain: Fn.join('-', ['flotilla', stackUuid]),
      });
      userPoolClient = new cognito.CfnUserPoolClient(this, 'UserPoolClient', {
        userPoolId: userPool.ref,
        clientName: `${Aws.STACK_NAME}-ui`,
        generateSecret: false,
        allowedOAuthFlowsUserPoolClient: true,
        allowedOAuthFlows: ['code'],
        allowedOAuthScopes: ['openid', 'email'],
        supportedIdentityProviders: ['COGNITO'],
        callbackUrLs: [apiUrl],
        explicitAuthFlows: ['ALLOW_REFRESH_TOKEN_AUTH'],
        preventUserExistenceErrors: 'ENABLED',
      });
    }
    const issuer = userPool
      ? `https://cognito-idp.${Aws.REGION}.${Aws.URL_SUFFIX}/${userPool.ref}`
      : auth instanceof JwtAuth
        ? auth.options.issuer
        : '';
    const cognitoUrl = (path: string) =>
      userPoolDomain ? `https://${userPoolDomain.ref}.auth.${Aws.REGION}.amazoncognito.com/oauth2/${path}` : '';
    const useJwt = auth.kind !== 'IAM';

    // ----- functions ---------------------------------------------------------------
    const subnetIds = props.vpc.selectSubnets(props.vpcSubnets).subnetIds;
    const securityGroups =
      props.securityGroups ??
      [
        new ec2.SecurityGroup(this, 'TaskSecurityGroup', {
          vpc: props.vpc,
          description: 'Flotilla runs: all outbound (image registry, logs), no inbound',
          allowAllOutbound: true,
        }),
      ];
    const list = (values: string[]) =>
      values.some((v) => Token.isUnresolved(v)) ? Fn.join(',', values) : values.join(',');
    const environment: Record<string, string> = {
      FLOTILLA_TABLE: table.ref,
      FLOTILLA_QUEUE_PREFIX: prefix,
      FLOTILLA_EVENT_BUS: runsBus.ref,
      FLOTILLA_LOG_BUCKET: runLogBucket.ref,
      FLOTILLA_PRICES: props.priceTable ?? '',
      FLOTILLA_LOG_GROUP: taskLogGroup.ref,
      FLOTILLA_SUBNETS: list(subnetIds),
      FLOTILLA_SECURITY_GROUPS: list(securityGroups.map((g) => g.securityGroupId)),
      FLOTILLA_ASSIGN_PUBLIC_IP: String(props.assignPublicIp ?? false),
      FLOTILLA_EXECUTION_ROLE_ARN: executionRole.attrArn,
      FLOTILLA_TASK_ROLE_ARN: props.taskRole?.roleArn ?? '',
      FLOTILLA_ECS_CLUSTER_PREFIX: prefix,
      // ECS takes at most 36 characters of startedBy: the stack id's UUID.
      FLOTILLA_STARTED_BY: stackUuid,
      FLOTILLA_MODE: props.serverMode ?? 'prod',
      FLOTILLA_DEFAULT_CLUSTER: defaultCluster,
      FLOTILLA_MAX_ATTEMPTS: String(maxAttempts),
      FLOTILLA_MAX_MEMORY_MB: String(maxMemoryMb),
      FLOTILLA_REQUEUE_AFTER_MINUTES: String(requeueMinutes),
      FLOTILLA_RECONCILE_AFTER_MINUTES: String(reconcileMinutes),
      FLOTILLA_AWS_CONNECT_TIMEOUT_MS: String(connectMs),
      FLOTILLA_AWS_ATTEMPT_TIMEOUT_MS: String(attemptMs),
      FLOTILLA_AWS_OPERATION_TIMEOUT_MS: String(operationMs),
      FLOTILLA_CORS_ALLOWED_ORIGINS: (props.corsAllowedOrigins ?? []).join(','),
      FLOTILLA_CLUSTERS: clusters.map((c) => c.name).join(','),
      FLOTILLA_IDENTITY_CLAIMS: (props.identityClaims ?? ['email', 'sub']).join(','),
      FLOTILLA_ADMINS: (props.admins ?? []).join(','),
      FLOTILLA_ADMIN_GROUP: props.adminGroup ?? '',
      FLOTILLA_API_AUTH: useJwt ? 'JWT' : 'IAM',
      FLOTILLA_OAUTH_ISSUER: issuer,
      FLOTILLA_OAUTH_CLIENT_ID: userPoolClient
        ? userPoolClient.ref
        : auth instanceof JwtAuth
          ? (auth.options.uiClientId ?? '')
          : '',
      FLOTILLA_OAUTH_SCOPES: (props.uiScopes ?? ['openid', 'email']).join(' '),
      FLOTILLA_OAUTH_AUTHORIZE_URL: cognitoUrl('authorize'),
      FLOTILLA_OAUTH_TOKEN_URL: cognitoUrl('token'),
      // Resolved at deploy time: the functions read the key from their environment.
      FLOTILLA_RUN_TOKEN_KEY: Fn.sub('{{resolve:secretsmanager:${RunTokenKey}}}', { RunTokenKey: runTokenKey.ref }),
    };

    const queueArns = arn('sqs', `${Aws.STACK_NAME}-*`);
    const taskArns = arn('ecs', `task/${Aws.STACK_NAME}-*/*`);
    const archiveObjects = `${runLogBucket.attrArn}/logs/*`;
    const tableAndIndexes = [table.attrArn, `${table.attrArn}/index/*`];
    const statusDeadLetters = new sqs.CfnQueue(this, 'StatusDeadLetters', {
      queueName: `${Aws.STACK_NAME}-status-dlq`,
      messageRetentionPeriod: 1209600,
      sqsManagedSseEnabled: true,
    });

    // Each function is allowed exactly the actions its code calls.
    const statements: Record<FlotillaBinary, object[]> = {
      api: [
        {
          Effect: 'Allow',
          Action: [
            'dynamodb:GetItem',
            'dynamodb:BatchGetItem',
            'dynamodb:Query',
            'dynamodb:PutItem',
            'dynamodb:UpdateItem',
            'dynamodb:DeleteItem',
          ],
          Resource: tableAndIndexes,
        },
        { Effect: 'Allow', Action: ['sqs:GetQueueUrl', 'sqs:SendMessage'], Resource: queueArns },
        { Effect: 'Allow', Action: 'ecs:StopTask', Resource: taskArns },
        { Effect: 'Allow', Action: 'logs:GetLogEvents', Resource: taskLogGroup.attrArn },
        { Effect: 'Allow', Action: 'events:PutEvents', Resource: runsBus.attrArn },
        { Effect: 'Allow', Action: 's3:GetObject', Resource: archiveObjects },
        { Effect: 'Allow', Action: 's3:ListBucket', Resource: runLogBucket.attrArn },
      ],
      submit: [
        {
          Effect: 'Allow',
          Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'],
          Resource: queueArns,
        },
        { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], Resource: table.attrArn },
        {
          Effect: 'Allow',
          Action: 'ecs:RunTask',
          Resource: arn('ecs', 'task-definition/*'),
          Condition: { ArnLike: { 'ecs:cluster': arn('ecs', `cluster/${Aws.STACK_NAME}-*`) } },
        },
        // RegisterTaskDefinition supports no resource-level permissions.
        { Effect: 'Allow', Action: 'ecs:RegisterTaskDefinition', Resource: '*' },
        { Effect: 'Allow', Action: 'ecs:StopTask', Resource: taskArns },
        {
          Effect: 'Allow',
          Action: 'iam:PassRole',
          Resource: props.taskRole ? [executionRole.attrArn, props.taskRole.roleArn] : [executionRole.attrArn],
          Condition: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
        },
        { Effect: 'Allow', Action: 'events:PutEvents', Resource: runsBus.attrArn },
      ],
      status: [
        { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], Resource: table.attrArn },
        { Effect: 'Allow', Action: 'events:PutEvents', Resource: runsBus.attrArn },
        // Lambda sends the events the function failed on to its on-failure
        // destination with the function's role.
        { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: statusDeadLetters.attrArn },
      ],
      retry: [
        {
          Effect: 'Allow',
          Action: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
          Resource: tableAndIndexes,
        },
        { Effect: 'Allow', Action: ['sqs:GetQueueUrl', 'sqs:SendMessage'], Resource: queueArns },
        { Effect: 'Allow', Action: 'ecs:StopTask', Resource: taskArns },
        // Runs whose ECS events were lost: their task's real state.
        { Effect: 'Allow', Action: 'ecs:DescribeTasks', Resource: taskArns },
        { Effect: 'Allow', Action: 'events:PutEvents', Resource: runsBus.attrArn },
        { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: archiveObjects },
        { Effect: 'Allow', Action: 's3:ListBucket', Resource: runLogBucket.attrArn },
      ],
    };

    const managed = ['service-role/AWSLambdaBasicExecutionRole', 'AWSXrayWriteOnlyAccess'].map(
      (name) => iam.ManagedPolicy.fromAwsManagedPolicyName(name).managedPolicyArn,
    );
    const fns = {} as Record<FlotillaBinary, lambda.CfnFunction>;
    for (const binary of BINARIES) {
      const name = FUNCTION_ID[binary];
      const logGroup = new logs.CfnLogGroup(this, `${name}LogGroup`, {
        logGroupName: `/flotilla/${Aws.STACK_NAME}/functions/${binary}`,
        retentionInDays: functionLogRetention,
      });
      const role = new iam.CfnRole(this, `${name}FunctionRole`, {
        assumeRolePolicyDocument: {
          Version: '2012-10-17',
          Statement: [{ Action: ['sts:AssumeRole'], Effect: 'Allow', Principal: { Service: ['lambda.amazonaws.com'] } }],
        },
        managedPolicyArns: managed,
        policies: [{ policyName: `${name}FunctionRolePolicy0`, policyDocument: { Statement: statements[binary] } }],
      });
      const functionCode = code.forBinary(binary);
      // Each code binds in its own scope (an asset is a construct named Code).
      const config = functionCode.bind(new Construct(this, `${name}FunctionCode`));
      if (!config.s3Location) {
        fail(`the ${binary} function's code must be a zip in S3 or an asset, not inline code or an image`);
      }
      const fn = new lambda.CfnFunction(this, `${name}Function`, {
        code: {
          s3Bucket: config.s3Location.bucketName,
          s3Key: config.s3Location.objectKey,
          s3ObjectVersion: config.s3Location.objectVersion,
        },
        description: DESCRIPTION[binary],
        runtime: 'provided.al2023',
        architectures: ['arm64'],
        handler: 'bootstrap',
        memorySize: 256,
        timeout: TIMEOUT_SECONDS[binary],
        tracingConfig: { mode: tracing },
        loggingConfig: { logFormat: 'JSON', logGroup: logGroup.ref },
        reservedConcurrentExecutions: reserved[binary],
        role: role.attrArn,
        environment: { variables: environment },
      });
      functionCode.bindToResource(fn, { resourceProperty: 'Code' });
      // The workspace binary this function runs (as SAM's BuildProperties say).
      fn.addMetadata('BuildProperties', { Binary: binary });
      fns[binary] = fn;
    }

    // api behind the HTTP API.
    const integration = new apigwv2.CfnIntegration(this, 'HttpApiIntegration', {
      apiId: httpApi.ref,
      integrationType: 'AWS_PROXY',
      integrationUri: fns.api.attrArn,
      payloadFormatVersion: '2.0',
    });
    let authorizer: apigwv2.CfnAuthorizer | undefined;
    if (useJwt) {
      authorizer = new apigwv2.CfnAuthorizer(this, 'JwtAuthorizer', {
        apiId: httpApi.ref,
        name: 'jwt',
        authorizerType: 'JWT',
        identitySource: ['$request.header.Authorization'],
        jwtConfiguration: {
          issuer,
          audience: userPoolClient ? [userPoolClient.ref] : auth instanceof JwtAuth ? auth.options.audience : [],
        },
      });
    }
    new apigwv2.CfnRoute(this, 'HttpApiRoute', {
      apiId: httpApi.ref,
      routeKey: '$default',
      target: `integrations/${integration.ref}`,
      authorizationType: useJwt ? 'JWT' : 'AWS_IAM',
      authorizerId: authorizer?.ref,
    });
    // Routes without a credential: the UI's files and how it signs in,
    // health, the API document, and a run's report of its own status (which
    // the api function checks against the run's token).
    for (const routeKey of PUBLIC_ROUTES) {
      new apigwv2.CfnRoute(this, `Public${alnum(routeKey)}`, {
        apiId: httpApi.ref,
        routeKey,
        target: `integrations/${integration.ref}`,
        authorizationType: 'NONE',
      });
    }
    const accessLogs = new logs.CfnLogGroup(this, 'ApiAccessLogGroup', {
      logGroupName: `/flotilla/${Aws.STACK_NAME}/api-access`,
      retentionInDays: functionLogRetention,
    });
    new apigwv2.CfnStage(this, 'HttpApiStage', {
      apiId: httpApi.ref,
      stageName: '$default',
      autoDeploy: true,
      defaultRouteSettings: { throttlingBurstLimit: burst, throttlingRateLimit: rate },
      accessLogSettings: { destinationArn: accessLogs.attrArn, format: ACCESS_LOG_FORMAT },
    });
    new lambda.CfnPermission(this, 'ApiInvokePermission', {
      action: 'lambda:InvokeFunction',
      functionName: fns.api.ref,
      principal: 'apigateway.amazonaws.com',
      sourceArn: arn('execute-api', `${httpApi.ref}/*`),
    });

    // submit from each cluster's queue, at the cluster's concurrency.
    for (const c of perCluster) {
      new lambda.CfnEventSourceMapping(this, `SubmitFrom${c.id}`, {
        eventSourceArn: c.queue.attrArn,
        functionName: fns.submit.ref,
        batchSize: 10,
        functionResponseTypes: ['ReportBatchItemFailures'],
        scalingConfig: { maximumConcurrency: c.maxConcurrency },
      });
    }

    // status from the ECS task state changes of the tasks this stack started.
    const taskStateChange = new events.CfnRule(this, 'StatusFunctionTaskStateChange', {
      eventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: {
          startedBy: [stackUuid],
          clusterArn: [{ prefix: arn('ecs', `cluster/${Aws.STACK_NAME}-`) }],
        },
      },
      targets: [
        {
          id: 'StatusFunctionTaskStateChangeLambdaTarget',
          arn: fns.status.attrArn,
          // EventBridge retries for an hour, then dead-letters the event.
          retryPolicy: { maximumEventAgeInSeconds: 3600, maximumRetryAttempts: 10 },
          deadLetterConfig: { arn: statusDeadLetters.attrArn },
        },
      ],
    });
    new lambda.CfnPermission(this, 'StatusFunctionTaskStateChangePermission', {
      action: 'lambda:InvokeFunction',
      functionName: fns.status.ref,
      principal: 'events.amazonaws.com',
      sourceArn: taskStateChange.attrArn,
    });
    new sqs.CfnQueuePolicy(this, 'StatusDeadLettersPolicy', {
      queues: [statusDeadLetters.ref],
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: 'sqs:SendMessage',
            Resource: statusDeadLetters.attrArn,
            Condition: { ArnEquals: { 'aws:SourceArn': taskStateChange.attrArn } },
          },
        ],
      },
    });
    new lambda.CfnEventInvokeConfig(this, 'StatusInvokeConfig', {
      functionName: fns.status.ref,
      qualifier: '$LATEST',
      maximumRetryAttempts: 2,
      maximumEventAgeInSeconds: 3600,
      destinationConfig: { onFailure: { destination: statusDeadLetters.attrArn } },
    });

    // retry on its schedule.
    const tick = new events.CfnRule(this, 'RetryFunctionTick', {
      scheduleExpression: (props.retrySchedule ?? events.Schedule.rate(Duration.minutes(1))).expressionString,
      targets: [{ id: 'RetryFunctionTickLambdaTarget', arn: fns.retry.attrArn }],
    });
    new lambda.CfnPermission(this, 'RetryFunctionTickPermission', {
      action: 'lambda:InvokeFunction',
      functionName: fns.retry.ref,
      principal: 'events.amazonaws.com',
      sourceArn: tick.attrArn,
    });

    // ----- alarms: each fires on the first count, notifies the topic both ways
    const alarm = (id: string, description: string, namespace: string, metricName: string, statistic: string, dimension: cloudwatch.CfnAlarm.DimensionProperty) =>
      new cloudwatch.CfnAlarm(this, id, {
        alarmDescription: description,
        namespace,
        metricName,
        dimensions: [dimension],
        statistic,
        period: 300,
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: 'GreaterThanThreshold',
        treatMissingData: 'notBreaching',
        alarmActions,
        okActions: alarmActions,
      });
    for (const c of perCluster) {
      alarm(
        `DeadLettersAlarm${c.id}`,
        `Tickets of cluster ${c.name} that submit could not handle are in ${Aws.STACK_NAME}-dlq-${c.name} (README: Operations)`,
        'AWS/SQS',
        'ApproximateNumberOfMessagesVisible',
        'Maximum',
        { name: 'QueueName', value: c.deadLetters.attrQueueName },
      );
    }
    alarm(
      'StatusDeadLettersAlarm',
      `ECS task state changes the status function could not record are in ${Aws.STACK_NAME}-status-dlq (README: Operations)`,
      'AWS/SQS',
      'ApproximateNumberOfMessagesVisible',
      'Maximum',
      { name: 'QueueName', value: statusDeadLetters.attrQueueName },
    );
    for (const binary of BINARIES) {
      for (const metric of ['Errors', 'Throttles']) {
        const name = FUNCTION_ID[binary];
        alarm(
          `${name}${metric}Alarm`,
          `${metric} of the ${name} function of ${Aws.STACK_NAME} (README: Operations)`,
          'AWS/Lambda',
          metric,
          'Sum',
          { name: 'FunctionName', value: fns[binary].ref },
        );
      }
    }

    // ----- what an app wires to ------------------------------------------------------
    this.apiUrl = apiUrl;
    this.runsBus = events.EventBus.fromEventBusAttributes(this, 'RunsBusRef', {
      eventBusName: runsBus.ref,
      eventBusArn: runsBus.attrArn,
      eventBusPolicy: '',
    });
    this.table = dynamodb.Table.fromTableAttributes(this, 'TableRef', {
      tableArn: table.attrArn,
      grantIndexPermissions: true,
      globalIndexes: INDEXES.map(([name]) => name),
    });
    this.taskLogGroup = logs.LogGroup.fromLogGroupArn(this, 'TaskLogGroupRef', taskLogGroup.attrArn);
    this.statusDeadLetterQueue = sqs.Queue.fromQueueAttributes(this, 'StatusDeadLettersRef', {
      queueArn: statusDeadLetters.attrArn,
      queueUrl: statusDeadLetters.ref,
      queueName: statusDeadLetters.attrQueueName,
    });
    this.queues = {};
    this.ecsClusters = {};
    for (const c of perCluster) {
      this.queues[c.name] = sqs.Queue.fromQueueAttributes(this, `Queue${c.id}Ref`, {
        queueArn: c.queue.attrArn,
        queueUrl: c.queue.ref,
        queueName: c.queue.attrQueueName,
      });
      this.ecsClusters[c.name] = ecs.Cluster.fromClusterAttributes(this, `EcsCluster${c.id}Ref`, {
        clusterName: c.cluster.ref,
        clusterArn: c.cluster.attrArn,
        vpc: props.vpc,
        securityGroups,
      });
    }
    this.functions = {} as Record<FlotillaBinary, lambda.IFunction>;
    for (const binary of BINARIES) {
      this.functions[binary] = lambda.Function.fromFunctionAttributes(this, `${FUNCTION_ID[binary]}FunctionRef`, {
        functionArn: fns[binary].attrArn,
        sameEnvironment: true,
      });
    }
    this.userPool = userPool ? cognito.UserPool.fromUserPoolId(this, 'UserPoolRef', userPool.ref) : undefined;
    this.outputs = [
      ['ApiUrl', 'Base URL of the API (e.g. <ApiUrl>api/v6/task)', apiUrl],
      ['EventBusName', 'EventBridge bus carrying "Flotilla Run State Change" events', runsBus.ref],
      ['TableName', 'DynamoDB table of runs, their events and definitions', table.ref],
      ['TaskLogGroupName', "CloudWatch Logs group of the runs' output", taskLogGroup.ref],
      [
        'StatusDeadLetterQueueUrl',
        'Queue of the ECS task state changes the status function could not record',
        statusDeadLetters.ref,
      ],
    ];
  }

  /**
   * The SAM template's outputs (ApiUrl, EventBusName, TableName,
   * TaskLogGroupName, StatusDeadLetterQueueUrl) as outputs of the stack,
   * under those names.
   */
  public addOutputs(): void {
    const stack = Stack.of(this);
    for (const [name, description, value] of this.outputs) {
      new CfnOutput(stack, `${Names.uniqueId(this)}${name}`, { description, value }).overrideLogicalId(name);
    }
  }
}
