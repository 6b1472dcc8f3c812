//! `mps2-flash`: the host side of the mps2-an386 firmware test.
//!
//! ```text
//! mps2-flash pack --envelope APP.suit --image APP.bin -o APP.slot   slot image (suitcase-device format)
//! mps2-flash tamper APP.slot -o BAD.slot                            flip one bit of the image
//! mps2-flash init --slot APP.slot -o FLASH.bin                      factory flash: APP in slot A
//! mps2-flash stage --flash FLASH.bin --slot APP.slot                stage an update into slot B
//!            [--cut-after N [--torn]]                               ... with a power cut after operation N (exit 86)
//! mps2-flash status --flash FLASH.bin                               print the boot state
//! mps2-flash trust-init --flash FLASH.bin --state TRUST.cbor        provision the trust area
//! mps2-flash trust-stage --flash FLASH.bin --update UPDATE.suit     stage a trust update
//! mps2-flash provision-key --flash FLASH.bin --key KEK.cose         provision the device key
//! ```
//!
//! Staging goes through `suitcase-boot`'s [`Updater`] on a simulated NOR flash holding the
//! file, with the calls an application on the device makes to stage an update it downloaded
//! (begin: erase the secondary slot; write; finish: record the update pending), but with the
//! whole slot image in one write: 4 flash operations, where the application's download
//! programs slot B block by block. The partition map is `mps2-board`'s, the one the firmware
//! is built with.
//!
//! For the bootloader built with the feature `trust`: `trust-init` is the factory's
//! provisioning of the protected trust area with a trust state (`suitcase trust init`'s
//! document, written as `suitcase-boot`'s `TrustStore` record), and `trust-stage` is what the
//! application does with a downloaded trust update (`suitcase trust update`'s envelope): it
//! only reaches the staging area (`TrustStaging::stage`); the bootloader verifies and commits
//! it at the next reset.
//!
//! `provision-key` is the factory's other step: the device's payload key-encryption key
//! (`suitcase key generate --alg a128kw`'s COSE_Key) into the device key partition, outside
//! the slots, so that no release image carries it (layout.rs `DEVICE_KEY`).

use std::path::PathBuf;
use std::process::ExitCode;

use mps2_board::layout::{
    CONFIG, DEVICE_KEY, DEVICE_KEY_MAGIC, FLASH_SIZE, IMAGE_OFFSET, MAX_IMAGE, MAX_TRUST_UPDATE,
    SECTOR, SLOT_A, SLOT_B, STATE, TRUST, TRUST_STAGING,
};
use suitcase_boot::trust_store::{TrustStaging, TrustStore};
use suitcase_boot::{ImageIndex, ImageSlots, Updater};
use suitcase_flash_sim::{SharedFlash, SimFlash, Tear};
use suitcase_trust::{RECORD_SIZE, TrustState};

type Flash = SharedFlash<4, { SECTOR as usize }>;

/// The exit status of `stage --cut-after N` when the power cut happened (operation N was
/// reached), the status QEMU exits with when the board's power-cut hook cuts
/// (`mps2-board/src/semihosting.rs` `CUT_STATUS`); 0 means the staging finished uncut.
const CUT_STATUS: u8 = 86;

/// How a command ended.
enum Done {
    Finished,
    /// `stage --cut-after N`: the power went at operation N.
    PowerCut,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(Done::Finished) => ExitCode::SUCCESS,
        Ok(Done::PowerCut) => ExitCode::from(CUT_STATUS),
        Err(message) => {
            eprintln!("mps2-flash: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<Done, String> {
    let (command, rest) = args.split_first().ok_or_else(usage)?;
    let opt = |name: &str| -> Result<PathBuf, String> {
        rest.iter()
            .position(|a| a == name)
            .and_then(|i| rest.get(i + 1))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{command}: {name} PATH is required\n{}", usage()))
    };
    let done = match command.as_str() {
        "stage" => {
            let cut = match rest.iter().position(|a| a == "--cut-after") {
                None => None,
                Some(i) => Some(
                    rest.get(i + 1)
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|n| *n > 0)
                        .ok_or("stage: --cut-after wants an operation number from 1")?,
                ),
            };
            let torn = rest.iter().any(|a| a == "--torn");
            return stage(&opt("--flash")?, &opt("--slot")?, cut, torn);
        }
        "pack" => pack(&opt("--envelope")?, &opt("--image")?, &opt("-o")?),
        "tamper" => {
            let input = rest.first().map(PathBuf::from).ok_or_else(usage)?;
            tamper(&input, &opt("-o")?)
        }
        "init" => init(&opt("--slot")?, &opt("-o")?),
        "status" => status(&opt("--flash")?),
        "trust-init" => trust_init(&opt("--flash")?, &opt("--state")?),
        "trust-stage" => trust_stage(&opt("--flash")?, &opt("--update")?),
        "provision-key" => provision_key(&opt("--flash")?, &opt("--key")?),
        _ => Err(usage()),
    };
    done.map(|()| Done::Finished)
}

fn usage() -> String {
    "usage: mps2-flash pack --envelope E --image I -o SLOT | tamper SLOT -o SLOT | \
     init --slot SLOT -o FLASH | stage --flash FLASH --slot SLOT [--cut-after N [--torn]] | status --flash FLASH | \
     trust-init --flash FLASH --state TRUST.cbor | trust-stage --flash FLASH --update UPDATE.suit | \
     provision-key --flash FLASH --key KEK.cose"
        .into()
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A slot image whose application starts at IMAGE_OFFSET, where the application is linked.
fn pack(envelope: &PathBuf, image: &PathBuf, out: &PathBuf) -> Result<(), String> {
    let (envelope, image) = (read(envelope)?, read(image)?);
    if image.len() > MAX_IMAGE as usize {
        return Err(format!(
            "the image is {} bytes; a slot takes {MAX_IMAGE}",
            image.len()
        ));
    }
    let slot = suitcase_device::pack(&envelope, &image, IMAGE_OFFSET)
        .ok_or("the envelope or image is too large to pack")?;
    if slot.len() != IMAGE_OFFSET as usize + image.len() {
        return Err(format!(
            "the envelope is {} bytes; at most {} fit before the image",
            envelope.len(),
            IMAGE_OFFSET - suitcase_device::HEADER_SIZE
        ));
    }
    write(out, &slot)?;
    println!(
        "packed {} ({} bytes envelope, {} bytes image)",
        out.display(),
        envelope.len(),
        image.len()
    );
    Ok(())
}

/// Flip one bit in the middle of the application image, as a corrupted download or an
/// attacker with a flash probe would.
fn tamper(input: &PathBuf, out: &PathBuf) -> Result<(), String> {
    let mut slot = read(input)?;
    let image_len = slot
        .len()
        .checked_sub(IMAGE_OFFSET as usize)
        .filter(|len| *len > 0)
        .ok_or("the slot image holds no application image")?;
    let at = IMAGE_OFFSET as usize + image_len / 2;
    let byte = slot
        .get_mut(at)
        .ok_or("the slot image holds no application image")?;
    *byte ^= 0x10;
    write(out, &slot)?;
    println!("tampered {}: bit 4 of byte {at:#x} flipped", out.display());
    Ok(())
}

fn init(slot: &PathBuf, out: &PathBuf) -> Result<(), String> {
    let slot = read(slot)?;
    if slot.len() > SLOT_A.1 as usize {
        return Err("the slot image does not fit slot A".into());
    }
    let mut flash = vec![0xFF; FLASH_SIZE as usize];
    let at = SLOT_A.0 as usize;
    flash
        .get_mut(at..at + slot.len())
        .ok_or("the slot image does not fit slot A")?
        .copy_from_slice(&slot);
    write(out, &flash)?;
    println!(
        "flash {}: slot A holds the factory image, boot state erased",
        out.display()
    );
    Ok(())
}

fn open(path: &PathBuf) -> Result<Flash, String> {
    let bytes = read(path)?;
    if bytes.len() != FLASH_SIZE as usize {
        return Err(format!(
            "{} is not a {FLASH_SIZE}-byte flash image",
            path.display()
        ));
    }
    let sectors = FLASH_SIZE / SECTOR;
    let mut sim = SimFlash::uniform(SECTOR, sectors, 1).map_err(|e| format!("{e:?}"))?;
    sim.load(0, &bytes).map_err(|e| format!("{e:?}"))?;
    Ok(SharedFlash::new(sim))
}

type Parts = (
    [ImageSlots<suitcase_flash_sim::Partition<4, { SECTOR as usize }>>; 1],
    suitcase_flash_sim::Partition<4, { SECTOR as usize }>,
);

fn parts(flash: &Flash) -> Result<Parts, String> {
    let part =
        |(offset, size): (u32, u32)| flash.partition(offset, size).map_err(|e| format!("{e:?}"));
    Ok((
        [ImageSlots::new(part(SLOT_A)?, part(SLOT_B)?)],
        part(STATE)?,
    ))
}

/// Stage `slot` as an update. With `cut` (scripts/qemu-powercut.sh), the power goes after
/// erase or program operation `cut` of the staging (from 1; `torn`: during it, a prefix of it
/// applied, as docs/qemu.md says), and the file keeps what the cut left: then the command
/// exits with [`CUT_STATUS`], and with 0 only if the staging finished (N beyond its last
/// operation), so that the script counts only cuts that happened.
fn stage(path: &PathBuf, slot: &PathBuf, cut: Option<u64>, torn: bool) -> Result<Done, String> {
    let mut slot = read(slot)?;
    let flash = open(path)?;
    if let Some(n) = cut {
        flash
            .with(|f| {
                f.set_tear(if torn { Tear::Prefix } else { Tear::Complete });
                f.cut_power_after(n - 1);
            })
            .map_err(|e| format!("{e:?}"))?;
    }
    let (slots, state) = parts(&flash)?;
    let mut updater = Updater::new(CONFIG, slots, state).map_err(|e| e.to_string())?;
    let size = u32::try_from(slot.len()).map_err(|_| "slot image too large")?;
    // Programming is in whole 4-byte words; pad with erased bytes.
    slot.resize(slot.len().next_multiple_of(4), 0xFF);
    let staged = updater.begin([size]).and_then(|mut staging| {
        let target = staging.target();
        staging.write(ImageIndex(0), 0, &slot)?;
        staging.finish().map(|()| target)
    });
    drop(updater);
    let (powered, operations) = flash
        .with(|f| (f.is_powered(), f.stats().mutations()))
        .map_err(|e| format!("{e:?}"))?;
    if !powered {
        save(&flash, path)?;
        println!(
            "power cut during the staging at operation {operations}; flash kept as the cut left it"
        );
        return Ok(Done::PowerCut);
    }
    let target = staged.map_err(|e| e.to_string())?;
    save(&flash, path)?;
    println!(
        "staged {size} bytes into slot {target}; update pending ({operations} flash operations)"
    );
    Ok(Done::Finished)
}

fn status(path: &PathBuf) -> Result<(), String> {
    let flash = open(path)?;
    let (slots, state) = parts(&flash)?;
    let mut updater = Updater::new(CONFIG, slots, state).map_err(|e| e.to_string())?;
    let s = updater.status().map_err(|e| e.to_string())?;
    let [minimum] = s.min_security_versions;
    print!(
        "phase {}, running slot {}, anti-rollback minimum {minimum}",
        s.phase, s.running
    );
    if let Some(failure) = s.last_failure {
        print!(", last failure: {failure}");
    }
    let mut record = vec![0u8; RECORD_SIZE];
    match trust_store(&flash)?.load(&mut record) {
        Ok(Some(in_force)) => println!(", trust state {}", in_force.sequence),
        Ok(None) => println!(", no trust state"),
        Err(e) => println!(", {e}"),
    }
    Ok(())
}

fn save(flash: &Flash, path: &PathBuf) -> Result<(), String> {
    let bytes = flash
        .with(|f| f.contents().to_vec())
        .map_err(|e| format!("{e:?}"))?;
    write(path, &bytes)
}

fn trust_store(
    flash: &Flash,
) -> Result<TrustStore<suitcase_flash_sim::Partition<4, { SECTOR as usize }>>, String> {
    let (offset, size) = TRUST;
    let part = flash
        .partition(offset, size)
        .map_err(|e| format!("{e:?}"))?;
    TrustStore::new(part, RECORD_SIZE).map_err(|e| e.to_string())
}

/// The factory's provisioning (TUF §5.2: the first root is shipped out of band): the trust
/// area is erased and the state written as its only copy.
fn trust_init(path: &PathBuf, state: &PathBuf) -> Result<(), String> {
    let state = TrustState::decode(&read(state)?)
        .map_err(|e| format!("{}: not a trust state: {e}", state.display()))?;
    let flash = open(path)?;
    let (offset, size) = TRUST;
    flash
        .with(|f| f.load(offset, &vec![0xFF; size as usize]))
        .map_err(|e| format!("{e:?}"))?
        .map_err(|e| format!("{e:?}"))?;
    trust_store(&flash)?
        .write(None, state.sequence(), &state.encode_record())
        .map_err(|e| e.to_string())?;
    save(&flash, path)?;
    println!(
        "trust area of {}: trust state {} provisioned",
        path.display(),
        state.sequence()
    );
    Ok(())
}

/// The application's side of a trust update: into the staging area, never the trust area.
fn trust_stage(path: &PathBuf, update: &PathBuf) -> Result<(), String> {
    let envelope = read(update)?;
    if envelope.len() > MAX_TRUST_UPDATE {
        return Err(format!(
            "the trust update is {} bytes; the bootloader reads at most {MAX_TRUST_UPDATE}",
            envelope.len()
        ));
    }
    let flash = open(path)?;
    let (offset, size) = TRUST_STAGING;
    let part = flash
        .partition(offset, size)
        .map_err(|e| format!("{e:?}"))?;
    TrustStaging::new(part)
        .and_then(|mut s| s.stage(&envelope))
        .map_err(|e| e.to_string())?;
    save(&flash, path)?;
    println!(
        "staged a {}-byte trust update; the bootloader verifies it at the next reset",
        envelope.len()
    );
    Ok(())
}

/// The factory's provisioning of the device key (layout.rs `DEVICE_KEY`): the partition is
/// erased and written with the magic, the COSE_Key's length and the COSE_Key. No update
/// writes this partition, so the key never travels in a release image (RFC 9124
/// REQ.SEC.IMG.CONFIDENTIALITY).
fn provision_key(path: &PathBuf, key: &PathBuf) -> Result<(), String> {
    let cose = read(key)?;
    let (offset, size) = DEVICE_KEY;
    let room = size as usize - DEVICE_KEY_MAGIC.len() - 2;
    // A COSE_Key is a CBOR map (RFC 9052 §7): major type 5.
    if cose.first().is_none_or(|b| b >> 5 != 5) {
        return Err(format!(
            "{}: not a COSE_Key (expected a CBOR map, as `suitcase key generate --alg a128kw` writes)",
            key.display()
        ));
    }
    if cose.len() > room {
        return Err(format!(
            "{}: {} bytes; the device key partition holds at most {room}",
            key.display(),
            cose.len()
        ));
    }
    let len = u16::try_from(cose.len()).map_err(|_| "key too large")?;
    let mut part = vec![0xFF; size as usize];
    let mut record = DEVICE_KEY_MAGIC.to_vec();
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(&cose);
    part.get_mut(..record.len())
        .ok_or("key too large")?
        .copy_from_slice(&record);
    let flash = open(path)?;
    flash
        .with(|f| f.load(offset, &part))
        .map_err(|e| format!("{e:?}"))?
        .map_err(|e| format!("{e:?}"))?;
    save(&flash, path)?;
    println!(
        "device key partition of {}: {}-byte key provisioned",
        path.display(),
        cose.len()
    );
    Ok(())
}
