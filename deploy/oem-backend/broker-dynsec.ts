import { BACKEND_SHARE_GROUP, OTA_TOPIC_PREFIX, SHARE_GROUP_PATTERN, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { EvccError } from '../../core/errors.ts';

/**
 * mosquitto's dynamic-security plugin configuration for the OEM link (README "Broker ACL and the share group"). Why
 * not `acl_file`: mosquitto 2.0's acl_file never authorises a SUBSCRIBE (it checks `read` on delivery only), and on
 * delivery to a shared-subscription member it refuses, mosquitto drops the message rather than trying the next
 * member — so any vehicle could join the backend's share group and black-hole part of every vehicle's requests. The
 * plugin checks subscriptions (`subscribePattern`, default deny), but in 2.0.11 its topics take no `%u`, so each
 * vehicle gets its own role naming its own prefix, created at provisioning (the same entries `mosquitto_ctrl dynsec
 * createClient / createRole / addRoleACL / addClientRole` make on a running broker). Identities are the client
 * certificates' CNs (`use_identity_as_username`); the entries carry no password, so a password login matches none.
 */
export interface DynsecAcl {
  acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribePattern' | 'unsubscribePattern';
  topic: string;
  allow: boolean;
}

export interface DynsecConfig {
  clients: { username: string; textName?: string; roles: { rolename: string }[] }[];
  roles: { rolename: string; acls: DynsecAcl[] }[];
  groups: never[];
  defaultACLAccess: { publishClientSend: boolean; publishClientReceive: boolean; subscribe: boolean; unsubscribe: boolean };
}

/** The ACL entries of one vehicle: its own prefix only, in every direction. */
export function vehicleAcls(vehicleId: string): DynsecAcl[] {
  if (!VEHICLE_ID_PATTERN.test(vehicleId)) throw new EvccError('CONFIG_INVALID', `vehicle id ${JSON.stringify(vehicleId)} not allowed in topics`);
  const own = `${OTA_TOPIC_PREFIX}/${vehicleId}/#`;
  return (['publishClientSend', 'publishClientReceive', 'subscribePattern'] as const).map((acltype) => ({ acltype, topic: own, allow: true }));
}

export function dynamicSecurityConfig(o: { backendUser: string; vehicles: readonly string[]; shareGroup?: string }): DynsecConfig {
  const group = o.shareGroup ?? BACKEND_SHARE_GROUP;
  if (!SHARE_GROUP_PATTERN.test(group)) throw new EvccError('CONFIG_INVALID', `share group ${JSON.stringify(group)}: 1–64 characters without / + # or spaces`);
  if (o.vehicles.includes(o.backendUser)) throw new EvccError('CONFIG_INVALID', `vehicle id ${o.backendUser} is the backend's identity`);
  const dup = o.vehicles.find((v, i) => o.vehicles.indexOf(v) !== i);
  if (dup !== undefined) throw new EvccError('CONFIG_INVALID', `vehicle id ${dup} listed twice`);
  const all = `${OTA_TOPIC_PREFIX}/#`;
  const backend = {
    rolename: 'oem-backend',
    acls: [
      { acltype: 'publishClientSend', topic: all, allow: true },
      { acltype: 'publishClientReceive', topic: all, allow: true },
      // Plain and shared subscriptions of the backend's own group; no other group, no filter above the prefix.
      { acltype: 'subscribePattern', topic: all, allow: true },
      { acltype: 'subscribePattern', topic: `$share/${group}/${all}`, allow: true },
    ] satisfies DynsecAcl[],
  };
  return {
    clients: [
      { username: o.backendUser, textName: 'OEM backend instances', roles: [{ rolename: backend.rolename }] },
      ...o.vehicles.map((v) => ({ username: v, roles: [{ rolename: `vehicle-${v}` }] })),
    ],
    roles: [backend, ...o.vehicles.map((v) => ({ rolename: `vehicle-${v}`, acls: vehicleAcls(v) }))],
    groups: [],
    // Default deny for everything a role does not grant; unsubscribing is harmless.
    defaultACLAccess: { publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true },
  };
}
