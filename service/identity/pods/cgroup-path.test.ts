import { describe, expect, it } from 'vitest';
import { parseCgroupFile, parseCgroupPath, podFromCgroupFile } from './cgroup-path';

const UID = '5e1c9a3f-0b7d-4c2e-9f61-2a8d4b6c7e90';
const UID_ = UID.replace(/-/g, '_');
const CID = 'a3f1c0e2b4d6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081';
const STATIC_HASH = '6b1f2d9c0a8e4f3b7c5d1e2f3a4b5c6d';

describe('parseCgroupFile', () => {
  it('splits hierarchy, controllers and path, keeping colons in the path', () => {
    const lines = parseCgroupFile('12:cpu,cpuacct:/a\n1:name=systemd:/b:c\n0::/\n');
    expect(lines).toEqual([
      { hierarchyId: 12, controllers: ['cpu', 'cpuacct'], path: '/a' },
      { hierarchyId: 1, controllers: ['name=systemd'], path: '/b:c' },
      { hierarchyId: 0, controllers: [], path: '/' },
    ]);
  });
  it('skips malformed lines instead of throwing', () => {
    expect(parseCgroupFile('garbage\nx:y:/z\n3:memory:relative\n\n')).toEqual([]);
  });
});

describe('podFromCgroupFile: real /proc/PID/cgroup contents', () => {
  it('cgroup v2, systemd driver, containerd, BestEffort', () => {
    const r = podFromCgroupFile(
      `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${CID}.scope\n`,
    );
    expect(r).toMatchObject({ podUid: UID, containerId: CID, runtime: 'containerd', qosClass: 'besteffort', cgroupVersion: 'v2' });
  });

  it('cgroup v2, systemd driver, CRI-O, Burstable', () => {
    const r = podFromCgroupFile(
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${CID}.scope\n`,
    );
    expect(r).toMatchObject({ podUid: UID, containerId: CID, runtime: 'crio', qosClass: 'burstable' });
  });

  it('cgroup v2, systemd driver, Guaranteed pod (no QoS slice), cri-dockerd', () => {
    const r = podFromCgroupFile(`0::/kubepods.slice/kubepods-pod${UID_}.slice/docker-${CID}.scope\n`);
    expect(r).toMatchObject({ podUid: UID, containerId: CID, runtime: 'docker', qosClass: 'guaranteed' });
  });

  it('CRI-O conmon is in the pod but not in the container', () => {
    const r = podFromCgroupFile(
      `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-conmon-${CID}.scope\n`,
    );
    expect(r?.podUid).toBe(UID);
    expect(r?.containerId).toBeUndefined();
  });

  it('a nested cgroup inside the container scope still gives the container', () => {
    const r = podFromCgroupFile(
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope/init.scope\n`,
    );
    expect(r).toMatchObject({ podUid: UID, containerId: CID });
  });

  it('cgroup v2, cgroupfs driver (k3s default)', () => {
    expect(podFromCgroupFile(`0::/kubepods/besteffort/pod${UID}/${CID}\n`)).toMatchObject({
      podUid: UID,
      containerId: CID,
      qosClass: 'besteffort',
      cgroupVersion: 'v2',
    });
    expect(podFromCgroupFile(`0::/kubepods/pod${UID}/${CID}\n`)).toMatchObject({ podUid: UID, qosClass: 'guaranteed' });
  });

  it('cgroup v1, cgroupfs driver (docker-era node): every hierarchy has the path', () => {
    const text = [
      `12:hugetlb:/kubepods/burstable/pod${UID}/${CID}`,
      `11:memory:/kubepods/burstable/pod${UID}/${CID}`,
      `10:cpu,cpuacct:/kubepods/burstable/pod${UID}/${CID}`,
      `9:devices:/kubepods/burstable/pod${UID}/${CID}`,
      `8:pids:/kubepods/burstable/pod${UID}/${CID}`,
      `7:net_cls,net_prio:/kubepods/burstable/pod${UID}/${CID}`,
      `1:name=systemd:/kubepods/burstable/pod${UID}/${CID}`,
      '',
    ].join('\n');
    expect(podFromCgroupFile(text)).toMatchObject({
      podUid: UID,
      containerId: CID,
      qosClass: 'burstable',
      cgroupVersion: 'v1',
      runtime: 'unknown',
    });
  });

  it('cgroup v1, systemd driver, docker', () => {
    const p = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${CID}.scope`;
    const text = `11:memory:${p}\n4:pids:${p}\n1:name=systemd:${p}\n`;
    expect(podFromCgroupFile(text)).toMatchObject({ podUid: UID, containerId: CID, runtime: 'docker', cgroupVersion: 'v1' });
  });

  it('hybrid host (v1 controllers + empty v2 line): falls back to v1', () => {
    const p = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope`;
    const text = `4:memory:${p}\n1:name=systemd:${p}\n0::/\n`;
    expect(podFromCgroupFile(text)).toMatchObject({ podUid: UID, cgroupVersion: 'v1' });
  });

  it('kind / kubelet with its own cgroup root ("kubelet-kubepods-...")', () => {
    const r = podFromCgroupFile(
      `0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${CID}.scope\n`,
    );
    expect(r).toMatchObject({ podUid: UID, containerId: CID, qosClass: 'besteffort' });
  });

  it('reader in its own cgroup namespace sees a relative path with ".."', () => {
    const r = podFromCgroupFile(
      `0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${CID}.scope\n`,
    );
    expect(r).toMatchObject({ podUid: UID, containerId: CID });
  });

  it('static pod: the 32-hex config hash stands in for the UID', () => {
    const r = podFromCgroupFile(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${STATIC_HASH}.slice/cri-containerd-${CID}.scope\n`);
    expect(r?.podUid).toBe(STATIC_HASH);
  });

  it('the pod cgroup itself (no container below) gives the pod only', () => {
    const r = podFromCgroupFile(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice\n`);
    expect(r).toMatchObject({ podUid: UID });
    expect(r?.containerId).toBeUndefined();
  });

  it('processes outside pods give undefined', () => {
    for (const text of [
      '0::/\n',
      '0::/system.slice/containerd.service\n',
      '0::/user.slice/user-1000.slice/session-3.scope\n',
      '0::/kubepods.slice/kubepods-besteffort.slice\n',
      '0::/system.slice/docker-' + CID + '.scope\n', // plain docker container, not a pod
      '12:memory:/docker/' + CID + '\n',
      '4:memory:/process_api/38dc7276f0ac7dc3721b1a434779caab\n0::/\n', // this CI host
      '',
    ]) {
      expect(podFromCgroupFile(text), text).toBeUndefined();
    }
  });

  it('rejects look-alikes: dashes in a systemd slice, upper case, short uids, foreign parents', () => {
    expect(parseCgroupPath(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID}.slice`)).toBeUndefined();
    expect(parseCgroupPath(`/kubepods/besteffort/pod${UID.toUpperCase()}/${CID}`)).toBeUndefined();
    expect(parseCgroupPath('/kubepods/besteffort/pod1234/abc')).toBeUndefined();
    expect(parseCgroupPath(`/elsewhere/besteffort/pod${UID}/${CID}`)).toBeUndefined();
    expect(parseCgroupPath(`/mine/pod${UID}`)).toBeUndefined();
  });

  it('a container id that is not hex is not reported', () => {
    const r = parseCgroupPath(`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-notanid.scope`);
    expect(r?.podUid).toBe(UID);
    expect(r?.containerId).toBeUndefined();
  });
});
