/**
 * Where the four functions' code comes from: the same `cargo lambda build
 * --release --arm64` as `sam build` runs, either already built (the
 * directories or zips it leaves under `target/lambda/<binary>/`), built at
 * synth time as a bundling step, or any `lambda.Code` the app has.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';

/** The workspace binaries the stack's four functions run. */
export type FlotillaBinary = 'api' | 'submit' | 'status' | 'retry';

/** Every binary, in the order the stack declares the functions. */
export const BINARIES: readonly FlotillaBinary[] = ['api', 'submit', 'status', 'retry'];

/** The code of each function, one `lambda.Code` per binary. */
export interface FlotillaFunctionCode {
  readonly api: lambda.Code;
  readonly submit: lambda.Code;
  readonly status: lambda.Code;
  readonly retry: lambda.Code;
}

/** Options of a build at synth time. */
export interface CargoLambdaBuildOptions {
  /**
   * The workspace (the directory of the top Cargo.toml).
   * @default the repository this library is in
   */
  readonly workspace?: string;
  /**
   * The cargo-lambda command.
   * @default `cargo-lambda` on the PATH
   */
  readonly cargoLambda?: string;
}

/** The repository root, seen from `dist/lib` (compiled) or `lib` (sources). */
function repositoryRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'Cargo.toml')) && fs.existsSync(path.join(dir, 'functions'))) {
      return dir;
    }
    dir = path.dirname(dir);
  }
  throw new Error(`no Cargo workspace above ${__dirname}: give FlotillaCode the workspace or the built code`);
}

/** The functions' code. */
export abstract class FlotillaCode {
  /**
   * What `cargo lambda build --release --arm64` left in `lambdaDir`
   * (`target/lambda` by default, or `$CARGO_TARGET_DIR/lambda`): for each
   * binary its `bootstrap.zip` when there is one (`--output-format zip`, as
   * `scripts/build-lambdas` builds), else its directory with the
   * `bootstrap`. Synthesis fails, naming the binary and the build command,
   * when one is missing.
   */
  public static fromCargoLambdaOutput(lambdaDir?: string): FlotillaCode {
    const dir =
      lambdaDir ??
      path.join(process.env.CARGO_TARGET_DIR ?? path.join(repositoryRoot(), 'target'), 'lambda');
    return new BuiltCode(dir);
  }

  /**
   * Builds each binary with cargo-lambda while the app synthesizes (an
   * asset bundling step that runs locally, never in Docker), one build per
   * function as `sam build` does (cargo rebuilds only what changed). Each
   * asset is named by the hash of its bootstrap.
   */
  public static cargoLambdaBuild(options: CargoLambdaBuildOptions = {}): FlotillaCode {
    return new BundledCode(options.workspace ?? repositoryRoot(), options.cargoLambda ?? 'cargo-lambda');
  }

  /** Any code the app has (an S3 object, a zip elsewhere), per binary. */
  public static fromCode(code: FlotillaFunctionCode): FlotillaCode {
    return new GivenCode(code);
  }

  /** The code of `binary`. */
  public abstract forBinary(binary: FlotillaBinary): lambda.Code;
}

class BuiltCode extends FlotillaCode {
  constructor(private readonly dir: string) {
    super();
  }

  public forBinary(binary: FlotillaBinary): lambda.Code {
    const zip = path.join(this.dir, binary, 'bootstrap.zip');
    if (fs.existsSync(zip)) {
      return lambda.Code.fromAsset(zip);
    }
    const bootstrap = path.join(this.dir, binary, 'bootstrap');
    if (fs.existsSync(bootstrap)) {
      return lambda.Code.fromAsset(path.dirname(bootstrap), { exclude: ['*.zip'] });
    }
    throw new Error(
      `no ${binary} function in ${this.dir} (neither ${binary}/bootstrap.zip nor ${binary}/bootstrap): ` +
        'build them with `cargo lambda build --release --arm64` (or scripts/build-lambdas), ' +
        'or use FlotillaCode.cargoLambdaBuild()',
    );
  }
}

class BundledCode extends FlotillaCode {
  constructor(
    private readonly workspace: string,
    private readonly cargoLambda: string,
  ) {
    super();
  }

  public forBinary(binary: FlotillaBinary): lambda.Code {
    const { workspace, cargoLambda } = this;
    return lambda.Code.fromAsset(workspace, {
      // The source is the whole workspace for every function: the hash of
      // what the build made tells the four apart.
      assetHashType: AssetHashType.OUTPUT,
      exclude: ['target', '.git', '**/node_modules', '**/cdk.out', 'infra/cdk/dist', 'ui/node_modules'],
      bundling: {
        // Never used: the local build below runs, or synthesis fails.
        image: DockerImage.fromRegistry('scratch'),
        // What the local build runs; it also tells CDK's bundling cache the
        // four builds apart (the source is the same workspace).
        command: ['cargo', 'lambda', 'build', '--release', '--arm64', '-p', `flotilla-${binary}`],
        local: {
          tryBundle(outputDir: string): boolean {
            const lambdaDir = fs.mkdtempSync(path.join(outputDir, '..', `cargo-lambda-${binary}-`));
            try {
              execFileSync(
                cargoLambda,
                ['lambda', 'build', '--release', '--arm64', '-p', `flotilla-${binary}`, '--lambda-dir', lambdaDir],
                { cwd: workspace, stdio: ['ignore', process.stderr, process.stderr] },
              );
            } catch (e) {
              throw new Error(
                `cargo lambda build of ${binary} failed in ${workspace} (${(e as Error).message}): ` +
                  'install cargo-lambda, or build beforehand and use FlotillaCode.fromCargoLambdaOutput()',
              );
            }
            fs.copyFileSync(path.join(lambdaDir, binary, 'bootstrap'), path.join(outputDir, 'bootstrap'));
            fs.rmSync(lambdaDir, { recursive: true, force: true });
            return true;
          },
        },
      },
    });
  }
}

class GivenCode extends FlotillaCode {
  constructor(private readonly code: FlotillaFunctionCode) {
    super();
  }

  public forBinary(binary: FlotillaBinary): lambda.Code {
    return this.code[binary];
  }
}
