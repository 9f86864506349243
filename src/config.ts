/**
 * Daemon configuration: YAML files in configs/, validated once at start by a
 * zod schema; errors name the path of every bad key; the result is frozen.
 *
 * Split along its seams:
 *   config/schema.ts       the schema, the loaded types, sizes, CHAP secret rules, lunPath
 *   config/iscsi-names.ts  IQNs checked by the validator login uses (iscsi/names.ts)
 *   config/load.ts         YAML -> schema -> secrets from files, ACL folding, defaults -> frozen; backing paths
 *   config/defaults.ts     the embedded default configuration
 */
export {
  configSchema, chapSecretProblem, lunPath, parseSize, rbdLocation, MAX_CLUSTER_NODES,
  type AclConfig, type ChapConfig, type ClusterConfig, type ClusterNodeConfig, type Config, type LunConfig, type TargetConfig,
} from './config/schema';
export {
  ConfigError, checkBackingPaths, checkConfigFile, loadConfigFile, parseConfigText, validateConfig,
  type ValidateOptions,
} from './config/load';
export { DEFAULT_CONFIG_YAML, defaultConfig } from './config/defaults';
