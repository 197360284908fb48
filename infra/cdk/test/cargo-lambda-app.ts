/**
 * An app whose Flotilla builds its functions while it synthesizes
 * (`FlotillaCode.cargoLambdaBuild`); scripts/check-cdk --built synthesizes
 * it and checks each function's asset is the bootstrap scripts/build-lambdas
 * built. Context: `cargoLambda`, the cargo-lambda command.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Flotilla, FlotillaCode } from '../lib';

const app = new App();
const stack = new Stack(app, 'Flotilla', { env: { account: '123456789012', region: 'us-east-1' } });
new Flotilla(stack, 'Flotilla', {
  clusters: [{ name: 'default' }],
  vpc: ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a'],
    privateSubnetIds: ['subnet-0123456789abcdef0'],
  }),
  code: FlotillaCode.cargoLambdaBuild({ cargoLambda: app.node.tryGetContext('cargoLambda') }),
});
