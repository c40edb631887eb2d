import type { PinInfo, Role } from '../pins.js'

export interface DeviceInfo {
  /** The device's public ID (cb1…). */
  id: string
  label: string
  role: Role
  state: 'enabled' | 'blocked'
  firstSeen: number
  lastSeen: number
  /** Sessions open now. */
  online: boolean
}

export interface StorageInfo {
  quotaBytes?: number
  usedBytes: number
  files: number
}

export interface SubCloudInfo {
  index: number
  id: string
  name: string
  quotaBytes?: number
  createdAt: number
  /** The sub-cloud's pairing URI. */
  uri: string
}

/**
 * What a cloud's owner can do: locally on the server, or remotely from an owner device
 * over the secure channel (the same calls; the server checks the caller's role).
 */
export interface CloudAdmin {
  listDevices(): Promise<DeviceInfo[]>
  blockDevice(id: string): Promise<void>
  unblockDevice(id: string): Promise<void>
  /** Forgets the device; its sessions close at once and its key is refused. */
  revokeDevice(id: string): Promise<void>
  listPins(): Promise<PinInfo[]>
  /** A one-time PIN (random unless given), shown only in this answer. */
  addPin(options: { label: string; pin?: string; role?: Role; expiresInMs?: number }): Promise<{ label: string; pin: string; expiresAt: number }>
  removePin(label: string): Promise<void>
  storage(): Promise<StorageInfo>
  /** null removes the quota. */
  setQuota(bytes: number | null): Promise<void>
  /** Creates and starts a sub-cloud; the answer carries a one-time owner PIN to pair with it. */
  createSubCloud(options: { name: string; quotaBytes?: number }): Promise<SubCloudInfo & { pin: string }>
  listSubClouds(): Promise<SubCloudInfo[]>
  /** Stops the sub-cloud; `wipe` deletes its folder and state too. */
  destroySubCloud(index: number, options?: { wipe?: boolean }): Promise<void>
}

export type AdminOperation = keyof CloudAdmin
