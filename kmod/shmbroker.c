// SPDX-License-Identifier: GPL-2.0
/*
 * shmbroker: kernel-backed shared-memory regions handed out by a broker.
 *
 * Objects and their lifetimes:
 *
 *  - A region owns its pages. It is created by SHMBROKER_IOC_CREATE and lives
 *    in shmbroker_regions until SHMBROKER_IOC_DESTROY, whether or not anyone
 *    keeps /dev/shmbroker open (the broker may crash and re-adopt it). Each
 *    live region pins the module, so rmmod fails while one exists. The struct
 *    itself is refcounted (kref): the registry holds one reference and every
 *    grant holds one, so a client still holding a revoked fd never
 *    dereferences freed memory. The pages, however, are freed at DESTROY.
 *
 *  - A grant is one file (SHMBROKER_IOC_OPEN) on its own anonymous inode in
 *    a private pseudo filesystem. Having its own inode gives it its own
 *    address_space, so unmap_mapping_range() on it zaps exactly the mappings
 *    made through this grant and no other. The inode has no usable ->open,
 *    so re-opening it through /proc/PID/fd fails. The grant struct is
 *    refcounted too: its file holds one reference and every zap in flight
 *    one, and the struct holds the inode and a pin of the pseudo fs, so a
 *    zap running outside the registry lock never meets a freed inode even
 *    if the client closes the fd meanwhile.
 *
 *  - CREATE and OPEN write their results to user memory before publishing
 *    the new object (see shmbroker_create()); after publishing they never
 *    touch it again.
 *
 * Locking, outermost first:
 *
 *   shmbroker_lock (mutex)        registries of regions and grants, grant
 *                                 lists, per-region grant counts, grant
 *                                 states, region->dead. Held only for O(1)
 *                                 work per object: never across a user copy,
 *                                 an allocation of pages, or a zap.
 *     mapping->invalidate_lock    (per grant) faults and mmap take it shared,
 *                                 the zap exclusive: once a grant is REVOKED
 *                                 and its zap holds this lock, no fault is
 *                                 between "checked the state" and "PTE
 *                                 installed"
 *       i_mmap_rwsem, PTL         taken by the core mm inside
 *
 *   region->event_wq.lock         (spinlock, taken by the wait-queue calls
 *                                 only) is a leaf: NOTIFY, WAIT and poll take
 *                                 no other lock of this module, and REVOKE
 *                                 and DESTROY wake the queue after dropping
 *                                 shmbroker_lock and the invalidate_lock.
 *
 * REVOKE and DESTROY unlink under shmbroker_lock (state REVOKED, out of the
 * registry) and zap afterwards, holding only a grant reference and the
 * grant's invalidate_lock. Faults run under mmap_lock and only take the
 * grant's invalidate_lock, the same order as filemap faults. Nothing here
 * takes mmap_lock while holding shmbroker_lock.
 *
 * Pages are inserted as special PTEs (VM_MIXEDMAP, vmf_insert_mixed), not
 * as refcounted, rmapped pages. That is deliberate: get_user_pages() cannot
 * pin them, so no pin (O_DIRECT, vmsplice, RDMA) can keep access alive past
 * a revocation, and freeing the pages at DESTROY only has to wait for the
 * page tables to be zapped, which revocation does under the locks above.
 * VM_MIXEDMAP rather than VM_PFNMAP only so that /proc/PID/pagemap still
 * reports the frames (the selftests check hugepage backing through it).
 */

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mount.h>
#include <linux/mutex.h>
#include <linux/nodemask.h>
#include <linux/pfn_t.h>
#include <linux/poll.h>
#include <linux/pseudo_fs.h>
#include <linux/random.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <uapi/linux/shmbroker.h>

/* Ids are __u64 in the uAPI and index an xarray: that needs a 64-bit long. */
static_assert(sizeof(unsigned long) == sizeof(u64));
/* The uAPI's sizes are part of the ioctl numbers: new fields take reserved space. */
static_assert(sizeof(struct shmbroker_create) == 56);
static_assert(sizeof(struct shmbroker_open) == 56);
static_assert(sizeof(struct shmbroker_revoke) == 32);
static_assert(sizeof(struct shmbroker_destroy) == 32);
static_assert(sizeof(struct shmbroker_region_info) == 64);
static_assert(sizeof(struct shmbroker_list) == 40);
static_assert(sizeof(struct shmbroker_list_grants) == 48);
static_assert(sizeof(struct shmbroker_notify) == 32);
static_assert(sizeof(struct shmbroker_wait) == 40);

#define SHMBROKER_FS_MAGIC	0x53484d42	/* "SHMB" */
#define SHMBROKER_HUGE_ORDER	(PMD_SHIFT - PAGE_SHIFT)
#define SHMBROKER_HUGE_SIZE	(1ULL << PMD_SHIFT)

/* ----------------------------------------------------------------- compat */

/*
 * The module builds on Debian 12's 6.1 and on current kernels (checked
 * against 6.12 headers, see README.md). Each shim names the release that
 * changed the interface.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
/* 6.3: vm_flags is written only through the setters (per-VMA locks). */
static inline void shmbroker_vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
	vm_flags_set(vma, flags);
}

static inline void shmbroker_vm_flags_clear(struct vm_area_struct *vma, vm_flags_t flags)
{
	vm_flags_clear(vma, flags);
}

/* 6.3: inode operations get the mount's idmap, no longer its user namespace. */
#define SHMBROKER_SETATTR_MNT	struct mnt_idmap
#else
static inline void shmbroker_vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
	vma->vm_flags |= flags;
}

static inline void shmbroker_vm_flags_clear(struct vm_area_struct *vma, vm_flags_t flags)
{
	vma->vm_flags &= ~flags;
}

#define SHMBROKER_SETATTR_MNT	struct user_namespace
#endif

/* ----------------------------------------------------------------- limits */

/*
 * Every limit is a module parameter checked against hard bounds, at insmod
 * and on every write to /sys/module/shmbroker/parameters/: a value outside
 * them is refused with EINVAL and the old value stays.
 *
 * max_region_bytes is bounded so that a region's chunk array (one pointer
 * per 4 KiB page) stays far below what kvmalloc accepts (INT_MAX bytes;
 * above that it WARNs). max_total_bytes is bounded by the RAM of the machine
 * at the time of the write: region pages are unswappable, and a total above
 * RAM could only be met by the OOM killer.
 */
#define SHMBROKER_REGION_BYTES_LIMIT	(512ULL << 30)
#define SHMBROKER_REGIONS_LIMIT		(1UL << 20)
#define SHMBROKER_GRANTS_LIMIT		(1UL << 16)

struct shmbroker_limit {
	unsigned long value;	/* read with READ_ONCE: writers do not take a lock */
	unsigned long min;
	unsigned long max;	/* 0: the machine's RAM in bytes */
};

static unsigned long shmbroker_ram_bytes(void)
{
	return totalram_pages() << PAGE_SHIFT;
}

static int shmbroker_limit_set(const char *val, const struct kernel_param *kp)
{
	struct shmbroker_limit *l = kp->arg;
	unsigned long v, max = l->max ? l->max : shmbroker_ram_bytes();
	int err = kstrtoul(val, 0, &v);

	if (err)
		return err;
	if (v < l->min || v > max)
		return -EINVAL;
	WRITE_ONCE(l->value, v);
	return 0;
}

static int shmbroker_limit_get(char *buf, const struct kernel_param *kp)
{
	const struct shmbroker_limit *l = kp->arg;

	return scnprintf(buf, PAGE_SIZE, "%lu\n", READ_ONCE(l->value));
}

static const struct kernel_param_ops shmbroker_limit_ops = {
	.set = shmbroker_limit_set,
	.get = shmbroker_limit_get,
};

/* __MODULE_PARM_TYPE: module_param_cb does not tell modinfo the type. */
#define SHMBROKER_LIMIT(name, type, desc)				\
	module_param_cb(name, &shmbroker_limit_ops, &name, 0644);	\
	__MODULE_PARM_TYPE(name, type);					\
	MODULE_PARM_DESC(name, desc)

static struct shmbroker_limit max_region_bytes = {
	.value = 16ULL << 30, .min = PAGE_SIZE, .max = SHMBROKER_REGION_BYTES_LIMIT,
};
SHMBROKER_LIMIT(max_region_bytes, "ulong",
		"Largest region in bytes; CREATE beyond it fails with EFBIG (default 16 GiB, at most 512 GiB)");

static struct shmbroker_limit max_total_bytes = {
	.value = 0 /* half the RAM, set at load */, .min = PAGE_SIZE, .max = 0,
};
SHMBROKER_LIMIT(max_total_bytes, "ulong",
		"Bytes of all regions together; CREATE beyond it fails with ENOSPC (default half the RAM, at most the RAM)");

static struct shmbroker_limit max_regions = {
	.value = 4096, .min = 1, .max = SHMBROKER_REGIONS_LIMIT,
};
SHMBROKER_LIMIT(max_regions, "uint",
		"Most regions alive at once; CREATE beyond it fails with ENOSPC (default 4096, at most 1048576)");

static struct shmbroker_limit max_grants_per_region = {
	.value = 1024, .min = 1, .max = SHMBROKER_GRANTS_LIMIT,
};
SHMBROKER_LIMIT(max_grants_per_region, "uint",
		"Most unrevoked grants per region; OPEN beyond it fails with ENOSPC (default 1024, at most 65536)");

#define SHMBROKER_LIMIT_VALUE(name)	READ_ONCE((name).value)

/* ---------------------------------------------------------------- objects */

struct shmbroker_region {
	struct kref kref;		/* the registry and each grant */
	u64 id;
	u64 size;
	u32 flags;
	u32 numa_node;
	unsigned int order;		/* of each chunk: 0, or PMD order for HUGEPAGE */
	unsigned long nr_pages;		/* in PAGE_SIZE units */
	unsigned long nr_chunks;
	struct page **chunks;		/* freed by DESTROY once every grant is zapped */
	/* Under shmbroker_lock: */
	bool dead;			/* DESTROY unlinked it: OPEN may not add grants */
	struct list_head grants;	/* every grant whose file exists, revoked or not */
	unsigned int open_grants;	/* of those, the live ones */
	atomic_t mappings;
	/*
	 * Region events: the sequence NOTIFY bumps, and the one queue every
	 * waiter of every grant sleeps on (poll, epoll, WAIT). Revocations wake
	 * it too; each waiter then re-checks its own grant. Lives as long as
	 * the struct, i.e. as long as any grant file: a waiter never sleeps on
	 * a freed queue (epoll unhooks a file's entries before ->release).
	 */
	atomic64_t event_seq;
	wait_queue_head_t event_wq;
};

/*
 * NEW: OPEN is building it; it is in no registry or list and has no fd yet.
 * LIVE: in shmbroker_grants and mappable.
 * REVOKED: out of the registry for good (revoked, region destroyed, or file
 * closed); faults and mmap fail. Its mappings are gone once the zap that
 * follows the transition has run.
 */
enum shmbroker_grant_state {
	SHMBROKER_GRANT_NEW,
	SHMBROKER_GRANT_LIVE,
	SHMBROKER_GRANT_REVOKED,
};

struct shmbroker_grant {
	struct kref kref;		/* the grant file, and each zap in flight */
	u64 id;
	struct shmbroker_region *region;	/* holds a region reference */
	struct inode *inode;		/* holds an inode reference and a pin of the fs */
	bool rdonly;
	bool may_notify;		/* read-write, or SHMBROKER_OPEN_ALLOW_NOTIFY */
	u64 seen;			/* last sequence acknowledged (WAIT); for poll */
	/* Written under shmbroker_lock, read locklessly by faults, mmap and poll. */
	enum shmbroker_grant_state state;
	struct list_head node;		/* in region->grants, under shmbroker_lock */
	struct list_head zap_node;	/* on one DESTROY's private list */
};

static DEFINE_MUTEX(shmbroker_lock);
static DEFINE_XARRAY(shmbroker_regions);
static DEFINE_XARRAY(shmbroker_grants);
static atomic64_t shmbroker_last_id;	/* random start, see shmbroker_init() */
static u64 shmbroker_generation;	/* random per load, in sysfs */
static struct vfsmount *shmbroker_mnt;	/* pinned while grant structs exist */
static int shmbroker_mnt_count;

/* Statistics exported in sysfs; atomics so that readers never take the lock. */
static atomic_t shmbroker_nr_regions;	/* regions alive or being created */
static atomic64_t shmbroker_nr_bytes;	/* their bytes */
static atomic_t shmbroker_nr_grants;	/* live grants */
static atomic_t shmbroker_nr_mappings;

/* One id space for regions and grants, so an id names at most one object. */
static u64 shmbroker_new_id(void)
{
	return (u64)atomic64_inc_return(&shmbroker_last_id);
}

/* ---------------------------------------------------------------- regions */

static void shmbroker_free_chunks(struct page **chunks, unsigned long nr)
{
	unsigned long i;

	if (!chunks)
		return;
	for (i = 0; i < nr; i++) {
		if (!chunks[i])
			break;
		/*
		 * put_page rather than __free_pages: special PTEs take no page
		 * references, but staying on the refcount keeps this correct
		 * should anything else ever take one.
		 */
		put_page(chunks[i]);
		if (!(i & 255))
			cond_resched();
	}
	kvfree(chunks);
}

static void shmbroker_region_release(struct kref *kref)
{
	struct shmbroker_region *r = container_of(kref, struct shmbroker_region, kref);

	/* Normally freed at DESTROY; this covers a CREATE that failed late. */
	shmbroker_free_chunks(r->chunks, r->nr_chunks);
	kfree(r);
}

/*
 * Everything allocated here is sized by the caller, so: __GFP_ACCOUNT
 * charges it to the memory cgroup of the task creating the region (the
 * broker), __GFP_RETRY_MAYFAIL makes a request too big for that cgroup or
 * the machine fail with ENOMEM instead of invoking the OOM killer (the
 * memcg one included), __GFP_NOWARN because such a failure is the caller's
 * business, not a kernel problem worth a stack trace.
 */
#define SHMBROKER_GFP_USER_SIZED	(__GFP_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)

static int shmbroker_alloc_chunks(struct shmbroker_region *r)
{
	/* Zeroed: the pages are handed to other processes. */
	gfp_t gfp = GFP_HIGHUSER | __GFP_ZERO | SHMBROKER_GFP_USER_SIZED;
	int nid = NUMA_NO_NODE;
	unsigned long i;

	/*
	 * Compound, so each 2 MiB chunk is one physically contiguous page.
	 * RETRY_MAYFAIL lets the allocator compact and reclaim for it, and
	 * still fail (ENOMEM) rather than fall back to small pages.
	 */
	if (r->order)
		gfp |= __GFP_COMP;
	if (r->numa_node != SHMBROKER_NUMA_NO_NODE) {
		/* A node asked for is a node honoured, not a hint. */
		nid = r->numa_node;
		gfp |= __GFP_THISNODE;
	}

	r->chunks = kvcalloc(r->nr_chunks, sizeof(*r->chunks),
			     GFP_KERNEL | SHMBROKER_GFP_USER_SIZED);
	if (!r->chunks)
		return -ENOMEM;

	for (i = 0; i < r->nr_chunks; i++) {
		struct page *page;

		if (fatal_signal_pending(current))
			return -EINTR;
		if (nid == NUMA_NO_NODE)
			page = alloc_pages(gfp, r->order);
		else
			page = alloc_pages_node(nid, gfp, r->order);
		if (!page)
			return -ENOMEM;
		r->chunks[i] = page;
		cond_resched();
	}
	return 0;
}

/*
 * Publication rule, for CREATE and OPEN alike: the result is written to the
 * caller's memory first, and only then is the object put where other ioctls
 * can find it. The result write may fault, even stall (userfaultfd), and
 * may fail; until it has succeeded nobody else knows the object, so a
 * failure just frees it, and after publication this code never touches the
 * object again (a concurrent DESTROY may free it at once).
 */
static int shmbroker_create(struct shmbroker_create __user *uarg)
{
	struct shmbroker_create arg;
	struct shmbroker_region *r;
	u64 align;
	unsigned int i;
	int err;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	for (i = 0; i < ARRAY_SIZE(arg.reserved); i++)
		if (arg.reserved[i])
			return -EINVAL;
	if (arg.flags & ~SHMBROKER_CREATE_FLAGS_ALL)
		return -EINVAL;
	align = (arg.flags & SHMBROKER_CREATE_HUGEPAGE) ? SHMBROKER_HUGE_SIZE : PAGE_SIZE;
	if (!arg.size || !IS_ALIGNED(arg.size, align))
		return -EINVAL;
	/* __GFP_THISNODE on a node without memory could only fail. */
	if (arg.numa_node != SHMBROKER_NUMA_NO_NODE &&
	    (arg.numa_node >= MAX_NUMNODES || !node_state(arg.numa_node, N_MEMORY)))
		return -EINVAL;
	if (arg.size > SHMBROKER_LIMIT_VALUE(max_region_bytes))
		return -EFBIG;

	/* Reserve count and bytes before allocating, so concurrent CREATEs cannot overshoot. */
	if (atomic_inc_return(&shmbroker_nr_regions) > SHMBROKER_LIMIT_VALUE(max_regions)) {
		err = -ENOSPC;
		goto err_count;
	}
	if (atomic64_add_return(arg.size, &shmbroker_nr_bytes) >
	    SHMBROKER_LIMIT_VALUE(max_total_bytes)) {
		err = -ENOSPC;
		goto err_bytes;
	}
	if (!try_module_get(THIS_MODULE)) {
		err = -ENODEV;
		goto err_bytes;
	}

	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r) {
		err = -ENOMEM;
		goto err_module;
	}
	kref_init(&r->kref);
	INIT_LIST_HEAD(&r->grants);
	atomic_set(&r->mappings, 0);
	atomic64_set(&r->event_seq, 0);
	init_waitqueue_head(&r->event_wq);
	r->size = arg.size;
	r->flags = arg.flags;
	r->numa_node = arg.numa_node;
	r->order = (arg.flags & SHMBROKER_CREATE_HUGEPAGE) ? SHMBROKER_HUGE_ORDER : 0;
	r->nr_pages = arg.size >> PAGE_SHIFT;
	r->nr_chunks = r->nr_pages >> r->order;

	err = shmbroker_alloc_chunks(r);
	if (err)
		goto err_region;

	r->id = shmbroker_new_id();
	if (put_user(r->id, &uarg->region_id)) {
		err = -EFAULT;
		goto err_region;
	}
	mutex_lock(&shmbroker_lock);
	err = xa_insert(&shmbroker_regions, r->id, r, GFP_KERNEL);
	mutex_unlock(&shmbroker_lock);
	if (err)
		goto err_region;
	/* Published: @r may already be destroyed. */
	return 0;

err_region:
	kref_put(&r->kref, shmbroker_region_release);
err_module:
	module_put(THIS_MODULE);
err_bytes:
	atomic64_sub(arg.size, &shmbroker_nr_bytes);
err_count:
	atomic_dec(&shmbroker_nr_regions);
	return err;
}

/* ------------------------------------------------------------- pseudo fs */

/* What /proc/PID/fd/N and /proc/PID/maps show for a grant. */
static char *shmbroker_dname(struct dentry *dentry, char *buffer, int buflen)
{
	static const char name[] = "shmbroker:[grant]";

	if (buflen < (int)sizeof(name))
		return ERR_PTR(-ENAMETOOLONG);
	return memcpy(buffer + buflen - sizeof(name), name, sizeof(name));
}

static const struct dentry_operations shmbroker_dops = {
	.d_dname = shmbroker_dname,
};

static int shmbroker_init_fs_context(struct fs_context *fc)
{
	struct pseudo_fs_context *ctx = init_pseudo(fc, SHMBROKER_FS_MAGIC);

	if (!ctx)
		return -ENOMEM;
	ctx->dops = &shmbroker_dops;
	return 0;
}

/*
 * The mount is pinned (simple_pin_fs) only while grant files exist, and the
 * superblock holds a reference on .owner until its last dentry is gone: a
 * grant file drops its f_op module reference in __fput() before its dentry
 * and mount, so f_op alone would let rmmod free this struct and the dentry
 * ops under a final dput().
 */
static struct file_system_type shmbroker_fs_type = {
	.owner = THIS_MODULE,
	.name = "shmbroker",
	.init_fs_context = shmbroker_init_fs_context,
	.kill_sb = kill_anon_super,
};

/* ----------------------------------------------------------------- grants */

static void shmbroker_grant_free(struct kref *kref)
{
	struct shmbroker_grant *g = container_of(kref, struct shmbroker_grant, kref);

	kref_put(&g->region->kref, shmbroker_region_release);
	if (g->inode) {
		iput(g->inode);
		/* Last: the superblock must outlive the inode. */
		simple_release_fs(&shmbroker_mnt, &shmbroker_mnt_count);
	}
	kfree(g);
}

/*
 * Takes a LIVE grant out of the registry for good. Caller holds
 * shmbroker_lock; unless the grant's file is being released (no mapping
 * left), the caller must zap it next, outside the lock.
 */
static void shmbroker_unlink_grant_locked(struct shmbroker_grant *g)
{
	lockdep_assert_held(&shmbroker_lock);

	xa_erase(&shmbroker_grants, g->id);
	WRITE_ONCE(g->state, SHMBROKER_GRANT_REVOKED);
	g->region->open_grants--;
	atomic_dec(&shmbroker_nr_grants);
}

/*
 * Tears down every mapping of a grant already marked REVOKED. Called without
 * shmbroker_lock, holding a grant reference: a big zap stalls neither the
 * other ioctls nor other clients' close(). Like a hole punch: with
 * invalidate_lock held exclusively no fault is in flight, so after
 * unmap_mapping_range() nothing of this grant is mapped, and every later
 * fault sees the state and gets SIGBUS. Only this grant's address_space is
 * touched, so other grants of the same region keep their mappings. Zapping
 * twice (REVOKE racing DESTROY) is harmless, and whichever returns last
 * returns with the grant unmapped.
 */
static void shmbroker_zap_grant(struct shmbroker_grant *g)
{
	struct address_space *mapping = g->inode->i_mapping;

	filemap_invalidate_lock(mapping);
	unmap_mapping_range(mapping, 0, 0, 1);
	filemap_invalidate_unlock(mapping);
}

/*
 * Wakes every waiter of @r: nr_exclusive 0, because the queue is shared by
 * all grants of the region and an EPOLLEXCLUSIVE waiter on one grant must
 * not swallow the wake-up of another grant's waiter. The key lets epoll
 * skip items that asked for neither event (HUP is always asked for).
 */
static void shmbroker_region_wake(struct shmbroker_region *r, __poll_t mask)
{
	__wake_up(&r->event_wq, TASK_INTERRUPTIBLE, 0, poll_to_key(mask));
}

static vm_fault_t shmbroker_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct shmbroker_grant *g = vma->vm_file->private_data;
	struct shmbroker_region *r = g->region;
	struct address_space *mapping = g->inode->i_mapping;
	vm_fault_t ret = VM_FAULT_SIGBUS;
	unsigned long pfn;

	filemap_invalidate_lock_shared(mapping);
	/*
	 * r->chunks is stable here: DESTROY marks every grant REVOKED and zaps
	 * it (taking this lock exclusively) before freeing the chunks.
	 */
	if (READ_ONCE(g->state) != SHMBROKER_GRANT_LIVE || vmf->pgoff >= r->nr_pages)
		goto out;
	pfn = page_to_pfn(r->chunks[vmf->pgoff >> r->order]) +
	      (vmf->pgoff & ((1UL << r->order) - 1));
	/*
	 * One insert for reads and writes. .fault only runs for a missing
	 * PTE; a write to a present read-only one (mprotect, soft-dirty) goes
	 * to do_wp_page(), which makes a shared special PTE writable in place
	 * (wp_pfn_shared()). If a racing fault installed the PTE first, the
	 * insert leaves it alone and the access is retried. (No mkwrite
	 * variant: it is not exported on current kernels, and not needed.)
	 */
	ret = vmf_insert_mixed(vma, vmf->address, pfn_to_pfn_t(pfn));
out:
	filemap_invalidate_unlock_shared(mapping);
	return ret;
}

static void shmbroker_vm_open(struct vm_area_struct *vma)
{
	struct shmbroker_grant *g = vma->vm_file->private_data;

	atomic_inc(&g->region->mappings);
	atomic_inc(&shmbroker_nr_mappings);
}

static void shmbroker_vm_close(struct vm_area_struct *vma)
{
	struct shmbroker_grant *g = vma->vm_file->private_data;

	atomic_dec(&g->region->mappings);
	atomic_dec(&shmbroker_nr_mappings);
}

static const struct vm_operations_struct shmbroker_vm_ops = {
	.open = shmbroker_vm_open,
	.close = shmbroker_vm_close,
	.fault = shmbroker_vm_fault,
};

static int shmbroker_grant_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct shmbroker_grant *g = file->private_data;
	struct address_space *mapping = g->inode->i_mapping;
	unsigned long pages = vma_pages(vma);
	int err = 0;

	/*
	 * VM_MAYSHARE, not VM_SHARED: do_mmap() drops VM_SHARED for a
	 * MAP_SHARED mapping of a file that is not open for writing.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_pgoff >= g->region->nr_pages ||
	    pages > g->region->nr_pages - vma->vm_pgoff)
		return -ENXIO;
	if (g->rdonly) {
		if (vma->vm_flags & VM_WRITE)
			return -EACCES;
		/* So that mprotect(PROT_WRITE) fails too. */
		shmbroker_vm_flags_clear(vma, VM_MAYWRITE);
	}

	filemap_invalidate_lock_shared(mapping);
	if (READ_ONCE(g->state) != SHMBROKER_GRANT_LIVE) {
		err = -EACCES;
		goto out;
	}
	/*
	 * VM_DONTEXPAND: mremap cannot grow the mapping past the region.
	 * VM_DONTDUMP: region contents do not belong in a client's core dump.
	 */
	shmbroker_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &shmbroker_vm_ops;
	shmbroker_vm_open(vma);
out:
	filemap_invalidate_unlock_shared(mapping);
	return err;
}

/*
 * Queued first, checked second: a NOTIFY bumps the sequence before it
 * takes the queue's lock to wake, so either its wake-up finds this entry or
 * this check sees its sequence. Likewise for the state and REVOKE/DESTROY.
 */
static __poll_t shmbroker_grant_poll(struct file *file, poll_table *wait)
{
	struct shmbroker_grant *g = file->private_data;
	struct shmbroker_region *r = g->region;

	poll_wait(file, &r->event_wq, wait);
	if (READ_ONCE(g->state) == SHMBROKER_GRANT_REVOKED)
		return EPOLLHUP;
	if ((u64)atomic64_read(&r->event_seq) != READ_ONCE(g->seen))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

static int shmbroker_grant_notify(struct shmbroker_grant *g,
				  struct shmbroker_notify __user *uarg)
{
	struct shmbroker_notify arg;
	struct shmbroker_region *r = g->region;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.pad || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;
	if (!g->may_notify)
		return -EPERM;
	/* NEW cannot be seen here: the fd is installed only once LIVE. */
	if (READ_ONCE(g->state) != SHMBROKER_GRANT_LIVE)
		return -ENOENT;
	/* Fully ordered, and before the wake-up's lock: see shmbroker_grant_poll(). */
	arg.seq = atomic64_inc_return(&r->event_seq);
	shmbroker_region_wake(r, EPOLLIN | EPOLLRDNORM);
	if (put_user(arg.seq, &uarg->seq))
		return -EFAULT;
	return 0;
}

static int shmbroker_grant_wait(struct shmbroker_grant *g, struct shmbroker_wait __user *uarg)
{
	struct shmbroker_wait arg;
	struct shmbroker_region *r = g->region;
	int err;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~SHMBROKER_WAIT_FLAGS_ALL) || arg.pad ||
	    arg.reserved[0] || arg.reserved[1])
		return -EINVAL;
	WRITE_ONCE(g->seen, arg.last_seq);
	if (!(arg.flags & SHMBROKER_WAIT_NONBLOCK)) {
		err = wait_event_interruptible(r->event_wq,
			READ_ONCE(g->state) != SHMBROKER_GRANT_LIVE ||
			(u64)atomic64_read(&r->event_seq) != arg.last_seq);
		if (err)
			return err;
	}
	if (READ_ONCE(g->state) != SHMBROKER_GRANT_LIVE)
		return -ENOENT;
	if (put_user((u64)atomic64_read(&r->event_seq), &uarg->seq))
		return -EFAULT;
	return 0;
}

/* Grant fds take only the region-event commands; everything else is ENOTTY. */
static long shmbroker_grant_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct shmbroker_grant *g = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SHMBROKER_IOC_NOTIFY:
		return shmbroker_grant_notify(g, uarg);
	case SHMBROKER_IOC_WAIT:
		return shmbroker_grant_wait(g, uarg);
	default:
		return -ENOTTY;
	}
}

static int shmbroker_grant_release(struct inode *inode, struct file *file)
{
	struct shmbroker_grant *g = file->private_data;

	/* No VMA is left (each holds a reference on this file): nothing to zap. */
	mutex_lock(&shmbroker_lock);
	if (g->state == SHMBROKER_GRANT_LIVE)
		shmbroker_unlink_grant_locked(g);
	list_del_init(&g->node);
	mutex_unlock(&shmbroker_lock);

	kref_put(&g->kref, shmbroker_grant_free);
	return 0;
}

/*
 * The region's pages are memory, not a cache of anything: there is nothing
 * to write back, and msync(MS_SYNC) must succeed as it does on memfd.
 */
static const struct file_operations shmbroker_grant_fops = {
	.owner = THIS_MODULE,
	.mmap = shmbroker_grant_mmap,
	.poll = shmbroker_grant_poll,
	.unlocked_ioctl = shmbroker_grant_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.fsync = noop_fsync,
	.release = shmbroker_grant_release,
	.llseek = noop_llseek,
};

/* Size and mode are fixed for the life of a grant: no truncate, no chmod. */
static int shmbroker_grant_setattr(SHMBROKER_SETATTR_MNT *mnt,
				   struct dentry *dentry, struct iattr *attr)
{
	return -EPERM;
}

static const struct inode_operations shmbroker_grant_iops = {
	.setattr = shmbroker_grant_setattr,
};

/*
 * The file on its own inode for @g. On success the file owns the caller's
 * reference on @g, and @g owns a reference on the inode and a pin of the
 * pseudo fs (released by shmbroker_grant_free()): a zap that outlives the
 * file still has a live inode on a live superblock.
 */
static struct file *shmbroker_grant_file(struct shmbroker_grant *g)
{
	struct inode *inode;
	struct file *file;
	int err;

	err = simple_pin_fs(&shmbroker_fs_type, &shmbroker_mnt, &shmbroker_mnt_count);
	if (err)
		return ERR_PTR(err);
	inode = alloc_anon_inode(shmbroker_mnt->mnt_sb);
	if (IS_ERR(inode)) {
		file = ERR_CAST(inode);
		goto err_pin;
	}
	/*
	 * i_fop stays the VFS's no_open_fops, so an open() of this inode (a
	 * re-open through /proc/PID/fd) fails with ENXIO. S_IFREG makes fstat
	 * look like a plain file of the region's size.
	 */
	inode->i_mode = S_IFREG | (g->rdonly ? 0400 : 0600);
	inode->i_op = &shmbroker_grant_iops;
	inode->i_private = g;
	i_size_write(inode, g->region->size);

	/* __fput() drops a module reference for f_op->owner: take it here. */
	if (!try_module_get(THIS_MODULE)) {
		file = ERR_PTR(-ENODEV);
		goto err_inode;
	}
	file = alloc_file_pseudo(inode, shmbroker_mnt, "grant",
				 g->rdonly ? O_RDONLY : O_RDWR, &shmbroker_grant_fops);
	if (IS_ERR(file))
		goto err_module;
	/* The dentry took the first inode reference; this one is @g's. */
	ihold(inode);
	g->inode = inode;
	file->private_data = g;
	return file;

err_module:
	module_put(THIS_MODULE);
err_inode:
	iput(inode);
err_pin:
	simple_release_fs(&shmbroker_mnt, &shmbroker_mnt_count);
	return file;
}

/* Same publication rule as CREATE: the result is written before the grant is live. */
static int shmbroker_open(struct shmbroker_open __user *uarg)
{
	struct shmbroker_open arg;
	struct shmbroker_region *r;
	struct shmbroker_grant *g;
	struct file *file;
	unsigned int i;
	int fd, err;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	for (i = 0; i < ARRAY_SIZE(arg.reserved); i++)
		if (arg.reserved[i])
			return -EINVAL;
	if (arg.flags & ~SHMBROKER_OPEN_FLAGS_ALL)
		return -EINVAL;

	fd = get_unused_fd_flags(O_RDWR | ((arg.flags & SHMBROKER_OPEN_CLOEXEC) ? O_CLOEXEC : 0));
	if (fd < 0)
		return fd;

	g = kzalloc(sizeof(*g), GFP_KERNEL_ACCOUNT);
	if (!g) {
		err = -ENOMEM;
		goto err_fd;
	}
	kref_init(&g->kref);
	g->state = SHMBROKER_GRANT_NEW;
	g->rdonly = !!(arg.flags & SHMBROKER_OPEN_RDONLY);
	g->may_notify = !g->rdonly || (arg.flags & SHMBROKER_OPEN_ALLOW_NOTIFY);
	INIT_LIST_HEAD(&g->node);
	INIT_LIST_HEAD(&g->zap_node);

	mutex_lock(&shmbroker_lock);
	r = arg.region_id ? xa_load(&shmbroker_regions, arg.region_id) : NULL;
	err = 0;
	if (!r)
		err = -ENOENT;
	else if (r->open_grants >= SHMBROKER_LIMIT_VALUE(max_grants_per_region))
		err = -ENOSPC;
	else
		kref_get(&r->kref);
	mutex_unlock(&shmbroker_lock);
	if (err) {
		kfree(g);
		goto err_fd;
	}
	g->region = r;
	g->id = shmbroker_new_id();
	/* A new holder starts caught up: poll reports only later notifies. */
	g->seen = atomic64_read(&r->event_seq);

	file = shmbroker_grant_file(g);
	if (IS_ERR(file)) {
		kref_put(&g->kref, shmbroker_grant_free);
		err = PTR_ERR(file);
		goto err_fd;
	}
	/* From here on the file owns @g: its release undoes what follows. */
	if (put_user(fd, &uarg->fd) || put_user(g->id, &uarg->grant_id)) {
		err = -EFAULT;
		goto err_file;
	}

	mutex_lock(&shmbroker_lock);
	/* The region may have been destroyed, or filled up, meanwhile. */
	if (r->dead)
		err = -ENOENT;
	else if (r->open_grants >= SHMBROKER_LIMIT_VALUE(max_grants_per_region))
		err = -ENOSPC;
	else
		err = xa_insert(&shmbroker_grants, g->id, g, GFP_KERNEL);
	if (!err) {
		WRITE_ONCE(g->state, SHMBROKER_GRANT_LIVE);
		list_add_tail(&g->node, &r->grants);
		r->open_grants++;
		atomic_inc(&shmbroker_nr_grants);
	}
	mutex_unlock(&shmbroker_lock);
	if (err)
		goto err_file;
	fd_install(fd, file);
	return 0;

err_file:
	fput(file);
err_fd:
	put_unused_fd(fd);
	return err;
}

static int shmbroker_revoke(struct shmbroker_revoke __user *uarg)
{
	struct shmbroker_revoke arg;
	struct shmbroker_grant *g;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.pad || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;

	mutex_lock(&shmbroker_lock);
	/* Only LIVE grants are in the registry, so revoking twice is ENOENT. */
	g = arg.grant_id ? xa_load(&shmbroker_grants, arg.grant_id) : NULL;
	if (g) {
		shmbroker_unlink_grant_locked(g);
		kref_get(&g->kref);
	}
	mutex_unlock(&shmbroker_lock);
	if (!g)
		return -ENOENT;

	shmbroker_zap_grant(g);
	/*
	 * After the zap, so the waiters this wakes find their mappings gone
	 * (one woken by a notify in between may see REVOKED a little earlier).
	 */
	shmbroker_region_wake(g->region, EPOLLHUP);
	kref_put(&g->kref, shmbroker_grant_free);
	return 0;
}

static int shmbroker_destroy_region(u64 id)
{
	struct shmbroker_region *r;
	struct shmbroker_grant *g, *tmp;
	struct page **chunks;
	LIST_HEAD(zap);

	/* Under the lock only what is O(1) per grant: unlink and take a reference. */
	mutex_lock(&shmbroker_lock);
	r = id ? xa_erase(&shmbroker_regions, id) : NULL;
	if (!r) {
		mutex_unlock(&shmbroker_lock);
		return -ENOENT;
	}
	r->dead = true;
	/*
	 * Every grant with a file, revoked ones included: a REVOKE that
	 * unlinked one may still be zapping it, and the pages cannot go before
	 * that zap is done. Zapping it here too waits for it.
	 */
	list_for_each_entry(g, &r->grants, node) {
		if (g->state == SHMBROKER_GRANT_LIVE)
			shmbroker_unlink_grant_locked(g);
		kref_get(&g->kref);
		list_add_tail(&g->zap_node, &zap);
	}
	mutex_unlock(&shmbroker_lock);

	list_for_each_entry_safe(g, tmp, &zap, zap_node) {
		shmbroker_zap_grant(g);
		list_del(&g->zap_node);
		kref_put(&g->kref, shmbroker_grant_free);
		cond_resched();
	}
	/* Once for all grants, and only after every zap (see shmbroker_revoke()). */
	shmbroker_region_wake(r, EPOLLHUP);
	/*
	 * Every grant is REVOKED and zapped, and no new one can be added, so no
	 * PTE maps these pages and no fault can reach r->chunks again: they can
	 * go now, even while clients still hold their (dead) grant fds and
	 * with them the region struct.
	 */
	chunks = r->chunks;
	WRITE_ONCE(r->chunks, NULL);
	shmbroker_free_chunks(chunks, r->nr_chunks);
	atomic64_sub(r->size, &shmbroker_nr_bytes);
	atomic_dec(&shmbroker_nr_regions);
	kref_put(&r->kref, shmbroker_region_release);
	module_put(THIS_MODULE);
	return 0;
}

static int shmbroker_destroy(struct shmbroker_destroy __user *uarg)
{
	struct shmbroker_destroy arg;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.pad || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;
	return shmbroker_destroy_region(arg.region_id);
}

static int shmbroker_info(struct shmbroker_region_info __user *uarg)
{
	struct shmbroker_region_info arg;
	struct shmbroker_region *r;
	unsigned int i;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	for (i = 0; i < ARRAY_SIZE(arg.reserved); i++)
		if (arg.reserved[i])
			return -EINVAL;

	mutex_lock(&shmbroker_lock);
	r = arg.region_id ? xa_load(&shmbroker_regions, arg.region_id) : NULL;
	if (!r) {
		mutex_unlock(&shmbroker_lock);
		return -ENOENT;
	}
	arg.size = r->size;
	arg.flags = r->flags;
	arg.numa_node = r->numa_node;
	arg.open_grants = r->open_grants;
	arg.mappings = atomic_read(&r->mappings);
	mutex_unlock(&shmbroker_lock);

	/* A copy: @r is not touched after the lock is dropped. */
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

static int shmbroker_list(struct shmbroker_list __user *uarg)
{
	struct shmbroker_list arg;
	struct shmbroker_region *r;
	unsigned long index;
	u32 cap, n = 0;
	u64 *ids;
	int err = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;

	/*
	 * shmbroker_nr_regions is raised before a region is inserted and
	 * lowered after it is erased, so it bounds what the walk can find
	 * (and max_regions bounds it).
	 */
	cap = min_t(u32, arg.count, atomic_read(&shmbroker_nr_regions));
	ids = cap ? kvmalloc_array(cap, sizeof(*ids), GFP_KERNEL | SHMBROKER_GFP_USER_SIZED) : NULL;
	if (cap && !ids)
		return -ENOMEM;

	mutex_lock(&shmbroker_lock);
	xa_for_each_start(&shmbroker_regions, index, r, arg.start_id) {
		if (n >= cap)
			break;
		ids[n++] = index;
	}
	mutex_unlock(&shmbroker_lock);

	if (n && copy_to_user(u64_to_user_ptr(arg.ids_ptr), ids, n * sizeof(*ids)))
		err = -EFAULT;
	else if (put_user(n, &uarg->count))
		err = -EFAULT;
	kvfree(ids);
	return err;
}

/*
 * A recovery path (a broker restarting), so a walk over every grant is fine;
 * it stays O(1) per grant under the lock and copies out after dropping it.
 */
static int shmbroker_list_grants(struct shmbroker_list_grants __user *uarg)
{
	struct shmbroker_list_grants arg;
	struct shmbroker_region *r;
	struct shmbroker_grant *g;
	unsigned long index;
	u32 cap, n = 0;
	u64 *ids = NULL;
	int err = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;

	/* A region has at most max_grants_per_region live grants. */
	cap = min_t(u32, arg.count, SHMBROKER_LIMIT_VALUE(max_grants_per_region));
	if (cap) {
		ids = kvmalloc_array(cap, sizeof(*ids), GFP_KERNEL | SHMBROKER_GFP_USER_SIZED);
		if (!ids)
			return -ENOMEM;
	}

	mutex_lock(&shmbroker_lock);
	r = arg.region_id ? xa_load(&shmbroker_regions, arg.region_id) : NULL;
	if (!r) {
		err = -ENOENT;
	} else {
		xa_for_each_start(&shmbroker_grants, index, g, arg.start_id) {
			if (n >= cap)
				break;
			if (g->region == r)
				ids[n++] = index;
		}
	}
	mutex_unlock(&shmbroker_lock);

	if (!err && n && copy_to_user(u64_to_user_ptr(arg.ids_ptr), ids, n * sizeof(*ids)))
		err = -EFAULT;
	else if (!err && put_user(n, &uarg->count))
		err = -EFAULT;
	kvfree(ids);
	return err;
}

/*
 * The device's power (every region of every user) is checked once, at open,
 * as /dev/mem checks CAP_SYS_RAWIO; the uAPI header says why CAP_IPC_LOCK.
 * capable() looks at the initial user namespace, so root of a container or
 * of a user namespace that can reach the node still gets EPERM.
 */
static int shmbroker_dev_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_IPC_LOCK))
		return -EPERM;
	return 0;
}

/* One case per command; a new command adds a case and its own handler. */
static long shmbroker_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SHMBROKER_IOC_CREATE:
		return shmbroker_create(uarg);
	case SHMBROKER_IOC_OPEN:
		return shmbroker_open(uarg);
	case SHMBROKER_IOC_REVOKE:
		return shmbroker_revoke(uarg);
	case SHMBROKER_IOC_DESTROY:
		return shmbroker_destroy(uarg);
	case SHMBROKER_IOC_INFO:
		return shmbroker_info(uarg);
	case SHMBROKER_IOC_LIST:
		return shmbroker_list(uarg);
	case SHMBROKER_IOC_LIST_GRANTS:
		return shmbroker_list_grants(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations shmbroker_dev_fops = {
	.owner = THIS_MODULE,
	.open = shmbroker_dev_open,
	.unlocked_ioctl = shmbroker_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* ------------------------------------------------------------------ sysfs */

static ssize_t regions_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&shmbroker_nr_regions));
}
static DEVICE_ATTR_RO(regions);

static ssize_t bytes_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&shmbroker_nr_bytes));
}
static DEVICE_ATTR_RO(bytes);

static ssize_t grants_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&shmbroker_nr_grants));
}
static DEVICE_ATTR_RO(grants);

static ssize_t mappings_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&shmbroker_nr_mappings));
}
static DEVICE_ATTR_RO(mappings);

/* Random per load: equal values mean the same load (see the uAPI header on ids). */
static ssize_t generation_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%016llx\n", shmbroker_generation);
}
static DEVICE_ATTR_RO(generation);

static struct attribute *shmbroker_attrs[] = {
	&dev_attr_generation.attr,
	&dev_attr_regions.attr,
	&dev_attr_bytes.attr,
	&dev_attr_grants.attr,
	&dev_attr_mappings.attr,
	NULL,
};
ATTRIBUTE_GROUPS(shmbroker);

static struct miscdevice shmbroker_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = SHMBROKER_DEVICE_NAME,
	.fops = &shmbroker_dev_fops,
	.mode = 0600,
	.groups = shmbroker_groups,
};

static int __init shmbroker_init(void)
{
	/* Ids start at a random point in [2^32, 2^62): see the uAPI header. */
	atomic64_set(&shmbroker_last_id, (get_random_u64() >> 2) | (1ULL << 32));
	do
		shmbroker_generation = get_random_u64();
	while (!shmbroker_generation);
	if (!max_total_bytes.value)
		max_total_bytes.value = shmbroker_ram_bytes() / 2;
	return misc_register(&shmbroker_miscdev);
}

static void __exit shmbroker_exit(void)
{
	/* Regions and grant files pin the module, so both registries are empty. */
	misc_deregister(&shmbroker_miscdev);
	WARN_ON(!xa_empty(&shmbroker_regions) || !xa_empty(&shmbroker_grants));
	WARN_ON(shmbroker_mnt_count);
}

module_init(shmbroker_init);
module_exit(shmbroker_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("shmbroker authors");
MODULE_VERSION("0.3.0");
MODULE_DESCRIPTION("Revocable, memcg-charged shared-memory regions for the shmbroker daemon");
