/**
 * An app that adds Flotilla to a platform team's stack, next to what it
 * already has: the team's VPC (looked up; `cdk.context.json` holds the
 * answer, so `cdk synth` needs no AWS account), a topic its alarms go to,
 * and two clusters, one of them for GPU teams with more submit concurrency.
 * It wires the run-state bus to a queue of its own and puts the API's URL
 * in the stack's outputs.
 *
 * The functions' code is what `cargo lambda build --release --arm64` left
 * in target/lambda (scripts/build-lambdas builds it), or the directory the
 * `lambdaDir` context value names.
 *
 *   cd infra/cdk && npm ci && npm run build
 *   cd example && npx cdk synth          # or: npx cdk deploy
 */
import { App, CfnOutput, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Flotilla, FlotillaAuth, FlotillaCode } from '../lib';

const app = new App();
const stack = new Stack(app, 'DataPlatform', {
  stackName: 'data-platform',
  env: { account: '123456789012', region: 'us-east-1' },
});

const vpc = ec2.Vpc.fromLookup(stack, 'Vpc', { vpcName: 'data-platform' });
const alarms = new sns.Topic(stack, 'Alarms', { displayName: 'Data platform alarms' });

const flotilla = new Flotilla(stack, 'Flotilla', {
  clusters: [{ name: 'default' }, { name: 'gpu', maxConcurrency: 20 }],
  vpc,
  vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
  auth: FlotillaAuth.jwt({
    issuer: 'https://login.example.com/realms/data',
    audience: ['flotilla'],
    uiClientId: 'flotilla-ui',
  }),
  admins: ['platform-oncall@example.com'],
  alarmTopic: alarms,
  logRetention: logs.RetentionDays.THREE_MONTHS,
  maxAttempts: 4,
  reconcileAfter: Duration.minutes(15),
  corsAllowedOrigins: ['https://flotilla.example.com'],
  code: FlotillaCode.fromCargoLambdaOutput(app.node.tryGetContext('lambdaDir')),
});

// Every run state change, for the platform's own consumers.
const runStates = new sqs.Queue(stack, 'RunStates', { retentionPeriod: Duration.days(4) });
new events.Rule(stack, 'EveryRunStateChange', {
  eventBus: flotilla.runsBus,
  eventPattern: { detailType: ['Flotilla Run State Change'] },
  targets: [new targets.SqsQueue(runStates)],
});

new CfnOutput(stack, 'ApiUrl', { value: flotilla.apiUrl, description: 'Base URL of the Flotilla API' });
new CfnOutput(stack, 'RunStatesQueueUrl', { value: runStates.queueUrl });
