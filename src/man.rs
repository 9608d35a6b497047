//! The man pages: blobmount(1) and one page per command come from the command line's
//! definitions (clap_mangen); the sections no definition holds (examples, environment, files,
//! fstab, see also) are added to blobmount(1) here, and blobmount.toml(5) describes the config
//! file. Text, not code: kept short and in step with README.

use std::io::Write;
use std::path::Path;

/// Sections added at the end of blobmount(1), in roff.
pub const EXTRA_SECTIONS: &str = r#".SH EXAMPLES
Mount a container (quote the URL: the shell would cut it at the first &):
.PP
.nf
.RS
blobmount mount 'https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=...&sig=...' /mnt/data
.RE
.fi
.PP
With the token in a private file, options as in fstab, in the foreground:
.PP
.nf
.RS
blobmount mount https://ACCOUNT.blob.core.windows.net/CONTAINER /mnt/data \e
    \-\-sas\-file /etc/blobmount/data.sas \-o allow_other,uid=1000 \-f
.RE
.fi
.PP
A mount described in the config file, then its status, then unmounting (open files are
committed first):
.PP
.nf
.RS
blobmount mount data
blobmount status
blobmount unmount data
.RE
.fi
.PP
A token for a container, signed with the account key (AZURE_STORAGE_KEY), and what it allows:
.PP
.nf
.RS
blobmount sas generate \-\-account ACCOUNT \-\-container CONTAINER \-\-permissions racwdl \-\-expiry 8h
blobmount sas inspect 'sv=...&sig=...'
.RE
.fi
.SH FSTAB
.nf
data  /mnt/data  fuse.blobmount  _netdev,nofail,allow_other  0  0
.fi
.PP
mount(8) runs mount.fuse3, which runs \fBblobmount data /mnt/data \-o OPTIONS\fR. SOURCE is a
[mount.NAME] of the config file or a container URL without its token. Every option of
\fBblobmount mount\fR is accepted as \-o name=value, and ro, rw, allow_other, allow_root,
exec, noexec, uid, gid and umask mean what they mean for other filesystems.
.SH ENVIRONMENT
.TP
.B BLOBMOUNT_SAS
The first token, when the URL has none.
.TP
.B BLOBMOUNT_SAS_FILE
As \-\-sas\-file on the command line (for systemd credentials).
.TP
.B AZURE_STORAGE_KEY
The account key for \fBsas generate\fR (instead of \-\-key, which ps shows).
.TP
.B RUST_LOG
Log filter directives, added to \-\-log\-level.
.TP
.B STATE_DIRECTORY
Where files being written are staged and journaled, unless \-\-staging\-dir is given (set by
systemd's StateDirectory=; otherwise /var/lib/blobmount for root, else
$XDG_STATE_HOME/blobmount or ~/.local/state/blobmount).
.TP
.B BLOBMOUNT_FUSE_TUNING
Kernel-interface settings, for measurements only (docs/PERFORMANCE.md).
.SH FILES
.TP
.I /etc/blobmount/config.toml
Defaults and named mounts: see \fBblobmount.toml\fR(5).
.TP
.I /run/blobmount/
State of root's mounts (for other users: $XDG_RUNTIME_DIR/blobmount): each daemon's pid,
status line and outcome, read by \fBunmount\fR and \fBstatus\fR; on a machine without syslog,
the daemons' logs.
.TP
.I /etc/systemd/system/blobmount@.service
The unit of a named mount: systemctl start blobmount@data.
.SH SEE ALSO
\fBblobmount.toml\fR(5), \fBfusermount3\fR(1), \fBmount.fuse3\fR(8), \fBfstab\fR(5);
README.md and docs/SEMANTICS.md of the source.
"#;

/// blobmount.toml(5): the config file.
pub const CONFIG_PAGE: &str = r#".TH BLOBMOUNT.TOML 5 "" "blobmount" "File Formats"
.SH NAME
blobmount.toml \- defaults and named mounts of blobmount
.SH SYNOPSIS
/etc/blobmount/config.toml, or the file given by \-\-config
.SH DESCRIPTION
A TOML file. Keys at the top level are defaults for every mount; each table
[mount.NAME] describes a mount that \fBblobmount mount NAME\fR, \fBblobmount unmount NAME\fR,
an fstab line with NAME as its source, and the unit blobmount@NAME.service use.
.PP
Keys are the long option names of \fBblobmount mount\fR, with _ or \- (cache_size or
cache\-size); values are strings, integers or booleans. Relative paths are relative to the
file's directory. A mount table also takes:
.TP
.B url
The container URL, best without its token (https://ACCOUNT.blob.core.windows.net/CONTAINER).
.TP
.B mountpoint
Where it is mounted.
.TP
.B options
mount(8)-style options, as in fstab ("ro,allow_other,uid=1000").
.PP
Options given on the command line win over the file's, and a mount's table wins over the
top level. An unknown key is an error that names it. Keep the file private (mode 600) when it names a
token source, and keep tokens out of it: use sas_file or sas_command.
.SH EXAMPLE
.nf
cache_size = "512M"

[mount.data]
url = "https://ACCOUNT.blob.core.windows.net/data"
sas_file = "/etc/blobmount/data.sas"
mountpoint = "/mnt/data"
options = "allow_other,uid=1000,gid=1000"
.fi
.SH SEE ALSO
\fBblobmount\fR(1), \fBblobmount\-mount\fR(1)
"#;

/// blobmount(1) on `out`: clap's page, then [`EXTRA_SECTIONS`].
pub fn render_main(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)?;
    out.write_all(EXTRA_SECTIONS.as_bytes())
}

/// Every page into `dir`: one per command, blobmount(1) with its extra sections, and
/// blobmount.toml(5).
pub fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd.clone(), dir)?;
    let mut main = std::fs::File::create(dir.join("blobmount.1"))?;
    render_main(cmd, &mut main)?;
    std::fs::write(dir.join("blobmount.toml.5"), CONFIG_PAGE)
}
