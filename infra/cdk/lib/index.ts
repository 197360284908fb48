/** The Flotilla construct library: the service as one construct, and where its functions' code comes from. */
export * from './code';
export * from './flotilla';
