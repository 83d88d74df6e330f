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
 *    grant file holds one, so a client still holding a revoked fd never
 *    dereferences freed memory. The pages, however, are freed at DESTROY.
 *
 *  - A grant is one file (SHMBROKER_IOC_OPEN) on its own anonymous inode in
 *    a private pseudo filesystem. Having its own inode gives it its own
 *    address_space, so unmap_mapping_range() on it zaps exactly the mappings
 *    made through this grant and no other. The inode has no usable ->open,
 *    so re-opening it through /proc/PID/fd fails.
 *
 * Locking, outermost first:
 *
 *   shmbroker_lock (mutex)        registry of regions and grants, grant lists,
 *                                 per-region grant counts, the revoked flag
 *     mapping->invalidate_lock    (per grant) faults take it shared, revoke
 *                                 exclusive: once revoke holds it no fault is
 *                                 between "checked revoked" and "PTE installed"
 *       i_mmap_rwsem, PTL         taken by the core mm inside
 *
 * Faults run under mmap_lock and only take the grant's invalidate_lock, the
 * same order as filemap faults. Nothing here takes mmap_lock while holding
 * shmbroker_lock: user copies are done outside it.
 *
 * Pages are inserted as special PTEs (VM_MIXEDMAP, vmf_insert_mixed), not
 * as refcounted, rmapped pages. That is deliberate: get_user_pages() cannot
 * pin them, so no pin (O_DIRECT, vmsplice, RDMA) can keep access alive past
 * a revocation, and freeing the pages at DESTROY only has to wait for the
 * page tables to be zapped, which revocation does under the locks above.
 * VM_MIXEDMAP rather than VM_PFNMAP only so that /proc/PID/pagemap still
 * reports the frames (the selftests check hugepage backing through it).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/mutex.h>
#include <linux/nodemask.h>
#include <linux/pfn_t.h>
#include <linux/poll.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <uapi/linux/shmbroker.h>

/* Ids are __u64 in the uAPI and index an xarray: that needs a 64-bit long. */
static_assert(sizeof(unsigned long) == sizeof(u64));

#define SHMBROKER_FS_MAGIC	0x53484d42	/* "SHMB" */
#define SHMBROKER_HUGE_ORDER	(PMD_SHIFT - PAGE_SHIFT)
#define SHMBROKER_HUGE_SIZE	(1ULL << PMD_SHIFT)

static unsigned long max_region_bytes = 16ULL << 30;
module_param(max_region_bytes, ulong, 0644);
MODULE_PARM_DESC(max_region_bytes,
		 "Largest region in bytes; CREATE beyond it fails with EFBIG (default 16 GiB)");

static unsigned int max_regions = 4096;
module_param(max_regions, uint, 0644);
MODULE_PARM_DESC(max_regions,
		 "Most regions alive at once; CREATE beyond it fails with ENOSPC (default 4096)");

static unsigned int max_grants_per_region = 1024;
module_param(max_grants_per_region, uint, 0644);
MODULE_PARM_DESC(max_grants_per_region,
		 "Most unrevoked grants per region; OPEN beyond it fails with ENOSPC (default 1024)");

struct shmbroker_region {
	struct kref kref;
	u64 id;
	u64 size;
	u32 flags;
	u32 numa_node;
	unsigned int order;		/* of each chunk: 0, or PMD order for HUGEPAGE */
	unsigned long nr_pages;		/* in PAGE_SIZE units */
	unsigned long nr_chunks;
	struct page **chunks;		/* NULL once destroyed */
	/* Under shmbroker_lock: */
	struct list_head grants;
	unsigned int open_grants;
	atomic_t mappings;
};

struct shmbroker_grant {
	u64 id;
	struct shmbroker_region *region;
	struct inode *inode;
	bool rdonly;
	/* Written under shmbroker_lock and the inode's invalidate_lock. */
	bool revoked;
	struct list_head node;		/* in region->grants, under shmbroker_lock */
	wait_queue_head_t waitq;	/* woken on revocation, for poll() */
};

static DEFINE_MUTEX(shmbroker_lock);
static DEFINE_XARRAY(shmbroker_regions);
static DEFINE_XARRAY(shmbroker_grants);
static u64 shmbroker_next_region_id;	/* under shmbroker_lock */
static u64 shmbroker_next_grant_id;	/* under shmbroker_lock */
static struct vfsmount *shmbroker_mnt;	/* pinned while grant files exist */
static int shmbroker_mnt_count;

/* Statistics exported in sysfs; atomics so that readers never take the lock. */
static atomic_t shmbroker_nr_regions;
static atomic64_t shmbroker_nr_bytes;
static atomic_t shmbroker_nr_grants;
static atomic_t shmbroker_nr_mappings;

/* ---------------------------------------------------------------- regions */

static int shmbroker_destroy_region(u64 id);

static void shmbroker_free_chunks(struct page **chunks, unsigned long nr,
				  unsigned int order)
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
	shmbroker_free_chunks(r->chunks, r->nr_chunks, r->order);
	kfree(r);
}

static int shmbroker_alloc_chunks(struct shmbroker_region *r)
{
	/*
	 * __GFP_ACCOUNT charges the pages to the memory cgroup of the task
	 * creating the region (the broker), __GFP_ZERO because they are handed
	 * to other processes. __GFP_RETRY_MAYFAIL so that a region too big for
	 * the machine fails with ENOMEM instead of invoking the OOM killer.
	 */
	gfp_t gfp = GFP_HIGHUSER | __GFP_ACCOUNT | __GFP_ZERO | __GFP_NOWARN |
		    __GFP_RETRY_MAYFAIL;
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

	r->chunks = kvcalloc(r->nr_chunks, sizeof(*r->chunks), GFP_KERNEL_ACCOUNT);
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
	if (arg.numa_node != SHMBROKER_NUMA_NO_NODE &&
	    (arg.numa_node >= MAX_NUMNODES || !node_online(arg.numa_node)))
		return -EINVAL;
	if (arg.size > READ_ONCE(max_region_bytes))
		return -EFBIG;

	/* Reserve the slot before allocating so concurrent CREATEs cannot overshoot. */
	if (atomic_inc_return(&shmbroker_nr_regions) > READ_ONCE(max_regions)) {
		err = -ENOSPC;
		goto err_count;
	}
	if (!try_module_get(THIS_MODULE)) {
		err = -ENODEV;
		goto err_count;
	}

	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r) {
		err = -ENOMEM;
		goto err_module;
	}
	kref_init(&r->kref);
	INIT_LIST_HEAD(&r->grants);
	atomic_set(&r->mappings, 0);
	r->size = arg.size;
	r->flags = arg.flags;
	r->numa_node = arg.numa_node;
	r->order = (arg.flags & SHMBROKER_CREATE_HUGEPAGE) ? SHMBROKER_HUGE_ORDER : 0;
	r->nr_pages = arg.size >> PAGE_SHIFT;
	r->nr_chunks = r->nr_pages >> r->order;

	err = shmbroker_alloc_chunks(r);
	if (err)
		goto err_region;

	mutex_lock(&shmbroker_lock);
	r->id = ++shmbroker_next_region_id;
	err = xa_insert(&shmbroker_regions, r->id, r, GFP_KERNEL);
	/* Before unlocking: a DESTROY may follow at once and subtract it. */
	if (!err)
		atomic64_add(r->size, &shmbroker_nr_bytes);
	mutex_unlock(&shmbroker_lock);
	if (err)
		goto err_region;

	/* Nobody learnt the id: take the region down again rather than leak it. */
	if (put_user(r->id, &uarg->region_id)) {
		shmbroker_destroy_region(r->id);
		return -EFAULT;
	}
	return 0;

err_region:
	kref_put(&r->kref, shmbroker_region_release);
err_module:
	module_put(THIS_MODULE);
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

/* Caller holds shmbroker_lock; @g is not yet revoked. */
static void shmbroker_revoke_locked(struct shmbroker_grant *g)
{
	struct address_space *mapping = g->inode->i_mapping;

	lockdep_assert_held(&shmbroker_lock);

	/*
	 * Like a hole punch: with invalidate_lock held exclusively no fault is
	 * in flight, so after unmap_mapping_range() nothing of this grant is
	 * mapped, and every later fault sees the flag and gets SIGBUS. Only
	 * this grant's address_space is touched, so other grants of the same
	 * region keep their mappings.
	 */
	filemap_invalidate_lock(mapping);
	WRITE_ONCE(g->revoked, true);
	unmap_mapping_range(mapping, 0, 0, 1);
	filemap_invalidate_unlock(mapping);

	xa_erase(&shmbroker_grants, g->id);
	g->region->open_grants--;
	atomic_dec(&shmbroker_nr_grants);
	wake_up_interruptible_poll(&g->waitq, EPOLLHUP);
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
	/* r->chunks is stable here: DESTROY revokes (exclusively) before freeing. */
	if (READ_ONCE(g->revoked) || vmf->pgoff >= r->nr_pages)
		goto out;
	pfn = page_to_pfn(r->chunks[vmf->pgoff >> r->order]) +
	      (vmf->pgoff & ((1UL << r->order) - 1));
	/* mkwrite: a write fault on a present read-only PTE must upgrade it, not loop. */
	if (vmf->flags & FAULT_FLAG_WRITE)
		ret = vmf_insert_mixed_mkwrite(vma, vmf->address, pfn_to_pfn_t(pfn));
	else
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
		vma->vm_flags &= ~VM_MAYWRITE;
	}

	filemap_invalidate_lock_shared(mapping);
	if (READ_ONCE(g->revoked)) {
		err = -EACCES;
		goto out;
	}
	/*
	 * VM_DONTEXPAND: mremap cannot grow the mapping past the region.
	 * VM_DONTDUMP: region contents do not belong in a client's core dump.
	 */
	vma->vm_flags |= VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP;
	vma->vm_ops = &shmbroker_vm_ops;
	shmbroker_vm_open(vma);
out:
	filemap_invalidate_unlock_shared(mapping);
	return err;
}

static __poll_t shmbroker_grant_poll(struct file *file, poll_table *wait)
{
	struct shmbroker_grant *g = file->private_data;

	poll_wait(file, &g->waitq, wait);
	return READ_ONCE(g->revoked) ? EPOLLHUP : 0;
}

static int shmbroker_grant_release(struct inode *inode, struct file *file)
{
	struct shmbroker_grant *g = file->private_data;
	struct shmbroker_region *r = g->region;

	/* No VMA is left: each holds a reference on this file. */
	mutex_lock(&shmbroker_lock);
	if (!g->revoked) {
		xa_erase(&shmbroker_grants, g->id);
		r->open_grants--;
		atomic_dec(&shmbroker_nr_grants);
	}
	list_del(&g->node);
	mutex_unlock(&shmbroker_lock);

	kref_put(&r->kref, shmbroker_region_release);
	kfree(g);
	/* The file still holds its own reference on the mount. */
	simple_release_fs(&shmbroker_mnt, &shmbroker_mnt_count);
	return 0;
}

static const struct file_operations shmbroker_grant_fops = {
	.owner = THIS_MODULE,
	.mmap = shmbroker_grant_mmap,
	.poll = shmbroker_grant_poll,
	.release = shmbroker_grant_release,
	.llseek = noop_llseek,
};

/* Size and mode are fixed for the life of a grant: no truncate, no chmod. */
static int shmbroker_grant_setattr(struct user_namespace *mnt_userns,
				   struct dentry *dentry, struct iattr *attr)
{
	return -EPERM;
}

static const struct inode_operations shmbroker_grant_iops = {
	.setattr = shmbroker_grant_setattr,
};

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
	file->private_data = g;
	g->inode = inode;
	return file;

err_module:
	module_put(THIS_MODULE);
err_inode:
	iput(inode);
err_pin:
	simple_release_fs(&shmbroker_mnt, &shmbroker_mnt_count);
	return file;
}

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
	g->rdonly = !!(arg.flags & SHMBROKER_OPEN_RDONLY);
	init_waitqueue_head(&g->waitq);
	INIT_LIST_HEAD(&g->node);

	mutex_lock(&shmbroker_lock);
	r = xa_load(&shmbroker_regions, arg.region_id);
	if (!r || !arg.region_id) {
		err = -ENOENT;
		goto err_unlock;
	}
	if (r->open_grants >= READ_ONCE(max_grants_per_region)) {
		err = -ENOSPC;
		goto err_unlock;
	}
	g->region = r;
	g->id = ++shmbroker_next_grant_id;
	err = xa_insert(&shmbroker_grants, g->id, g, GFP_KERNEL);
	if (err)
		goto err_unlock;
	file = shmbroker_grant_file(g);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		goto err_xa;
	}
	/* From here on the file owns @g: its release undoes what follows. */
	kref_get(&r->kref);
	list_add_tail(&g->node, &r->grants);
	r->open_grants++;
	atomic_inc(&shmbroker_nr_grants);
	mutex_unlock(&shmbroker_lock);

	arg.fd = fd;
	arg.grant_id = g->id;
	if (put_user(arg.fd, &uarg->fd) || put_user(arg.grant_id, &uarg->grant_id)) {
		fput(file);
		put_unused_fd(fd);
		return -EFAULT;
	}
	fd_install(fd, file);
	return 0;

err_xa:
	xa_erase(&shmbroker_grants, g->id);
err_unlock:
	mutex_unlock(&shmbroker_lock);
	kfree(g);
err_fd:
	put_unused_fd(fd);
	return err;
}

static int shmbroker_revoke(struct shmbroker_revoke __user *uarg)
{
	struct shmbroker_revoke arg;
	struct shmbroker_grant *g;
	int err = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.pad || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;

	mutex_lock(&shmbroker_lock);
	/* Revoked grants leave the registry, so revoking twice is ENOENT. */
	g = arg.grant_id ? xa_load(&shmbroker_grants, arg.grant_id) : NULL;
	if (g)
		shmbroker_revoke_locked(g);
	else
		err = -ENOENT;
	mutex_unlock(&shmbroker_lock);
	return err;
}

static int shmbroker_destroy_region(u64 id)
{
	struct shmbroker_region *r;
	struct shmbroker_grant *g;
	struct page **chunks;

	mutex_lock(&shmbroker_lock);
	r = id ? xa_erase(&shmbroker_regions, id) : NULL;
	if (!r) {
		mutex_unlock(&shmbroker_lock);
		return -ENOENT;
	}
	list_for_each_entry(g, &r->grants, node)
		if (!g->revoked)
			shmbroker_revoke_locked(g);
	/*
	 * Every grant is revoked, so no PTE maps these pages and no fault can
	 * reach r->chunks again: they can go now, even while clients still
	 * hold their (dead) grant fds and with them the region struct.
	 */
	chunks = r->chunks;
	r->chunks = NULL;
	mutex_unlock(&shmbroker_lock);

	shmbroker_free_chunks(chunks, r->nr_chunks, r->order);
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
	 * lowered after it is erased, so it bounds what the walk can find.
	 */
	cap = min_t(u32, arg.count, atomic_read(&shmbroker_nr_regions));
	ids = cap ? kvmalloc_array(cap, sizeof(*ids), GFP_KERNEL) : NULL;
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
	default:
		return -ENOTTY;
	}
}

static const struct file_operations shmbroker_dev_fops = {
	.owner = THIS_MODULE,
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

static struct attribute *shmbroker_attrs[] = {
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
MODULE_VERSION("0.1.0");
MODULE_DESCRIPTION("Revocable, memcg-charged shared-memory regions for the shmbroker daemon");
