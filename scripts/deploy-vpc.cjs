'use strict';
/**
 * serverless.yml `provider.vpc` for a deployment: the functions join the VPC of the broker and the database
 * when params subnetIds and securityGroupIds (comma-separated; --param or SUBNET_IDS / SECURITY_GROUP_IDS)
 * are given, and run outside any VPC when neither is. One without the other is a mistake and stops the
 * command. CommonJS because the Serverless Framework loads `${file(...)}` scripts with require().
 */
const list = (value) =>
  String(value ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);

module.exports = async ({ resolveVariable }) => {
  const subnetIds = list(await resolveVariable('param:subnetIds'));
  const securityGroupIds = list(await resolveVariable('param:securityGroupIds'));
  if (subnetIds.length === 0 && securityGroupIds.length === 0) return null;
  if (subnetIds.length === 0 || securityGroupIds.length === 0) {
    throw new Error('Give both subnetIds and securityGroupIds (SUBNET_IDS and SECURITY_GROUP_IDS), or neither');
  }
  return { subnetIds, securityGroupIds };
};
