"""Realistic complaint SMS for the load: varied Indonesian texts for many agencies.

Each text is built from a subject phrase that names a problem of one agency,
a place in Kabupaten Banjar and an optional tail in SMS style (slang,
abbreviations, Banjar Malay), so the router and the stores see the spread of
lengths and words that real traffic has.
"""

from __future__ import annotations

import random

# Subject phrases per agency; the agency is the router's expected answer.
SUBJECTS: dict[str, tuple[str, ...]] = {
    "PUPR": (
        "jalan rusak berlubang besar",
        "jln aspal hancur banyak lubang",
        "jembatan kayu patah tdk bisa dilewati motor",
        "got drainase tersumbat sampah jalan tergenang",
        "jalan desa rusak parah kalau hujan becek sekali",
    ),
    "PDAM": (
        "air PDAM mati sdh 3 hari",
        "air ledeng keruh bau kada layak minum",
        "pipa PDAM bocor air terbuang di pinggir jalan",
        "tagihan air PDAM naik padahal air jarang mengalir",
    ),
    "DLH": (
        "sampah menumpuk tdk diangkut seminggu",
        "ada pembuangan sampah liar di pinggir sungai",
        "tumpukan sampah di TPS bau busuk sampai ke rumah warga",
        "sungai tercemar limbah pabrik ikan banyak mati",
    ),
    "DISHUB": (
        "lampu lalu lintas mati di simpang empat",
        "lampu jalan PJU mati sudah sebulan gelap sekali",
        "parkir liar bikin macet tiap sore",
        "angkot ngetem sembarangan bikin macet",
    ),
    "DISDUKCAPIL": (
        "rekam KTP-el sdh 3 bulan blm jadi",
        "urus kartu keluarga KK di disdukcapil lama sekali",
        "akta kelahiran anak saya di disdukcapil blm selesai",
    ),
    "DISDIK": (
        "sekolah minta pungutan uang seragam mahal",
        "guru sering tdk masuk kelas anak2 terlantar",
        "pendaftaran PPDB zonasi anak saya ditolak padahal dekat",
    ),
    "DINSOS": (
        "bansos PKH tdk cair sdh 4 bulan",
        "warga miskin tdk dapat bantuan BPNT padahal terdaftar",
        "bantuan sosial PKH dipotong oknum pendamping",
    ),
    "DINKES": (
        "puskesmas tutup siang hari petugas tdk ada",
        "posyandu blm dapat vaksin imunisasi bulan ini",
        "fogging DBD blm dilakukan padahal banyak kasus demam berdarah",
    ),
    "DISDAG": (
        "gas elpiji 3 kg langka dan mahal di pengecer",
        "harga minyak goreng di pasar naik terus",
        "timbangan pedagang di pasar dicurangi",
    ),
    "DISTAN": (
        "pupuk subsidi langka petani kesulitan",
        "sapi warga banyak kena penyakit mulut dan kuku",
    ),
    "SATPOLPP": (
        "pedagang kaki lima jualan di trotoar mengganggu pejalan kaki",
        "tempat hiburan malam buka sampai subuh berisik",
    ),
    "PLN": (
        "listrik PLN sering padam tiap malam",
        "meteran listrik rusak token tdk bisa masuk",
    ),
    "DISKOMINFO": (
        "website pemkab tdk bisa dibuka dr kmrn",
        "wifi gratis di taman kota mati sdh sebulan",
    ),
    "DISNAKER": (
        "gaji karyawan dibayar di bawah UMK",
        "buruh di PHK sepihak tanpa pesangon",
    ),
    "INSPEKTORAT": (
        "ada pungli oleh oknum pegawai kecamatan",
        "oknum pegawai minta uang pelicin urus izin",
    ),
}

PLACES = (
    "di depan pasar Martapura",
    "di Kelurahan Jawa Martapura",
    "di desa Sungai Tabuk",
    "di Gambut dekat masjid",
    "di Kertak Hanyar",
    "di Astambul",
    "di Karang Intan",
    "di Aluh-Aluh",
    "di Simpang Empat",
    "di Mataraman",
    "di Pengaron",
    "di Sungai Pinang",
    "di komplek perumahan Citra Graha",
    "di jalan A Yani km 40",
    "di RT 05 RW 02 Tanjung Rema",
)

TAILS = (
    "",
    "",
    "mohon segera ditindaklanjuti",
    "tolong pian cek kesini",
    "sdh lapor ke desa tp gk ada tanggapan",
    "warga sdh resah",
    "mohon perhatian bapak bupati",
    "kami sangat kecewa, tlg diperbaiki",
    "sdh lama kada diurus",
    "mksh",
    "terimakasih atas perhatiannya. " * 3,
)

REGION_KEYWORDS = ("BANJAR", "banjar", "Banjar", "BANJAR:", "BANJAR,")


def complaint_text(rng: random.Random) -> tuple[str, str]:
    """One SMS text (with the region keyword) and the agency it is meant for."""
    agency = rng.choice(tuple(SUBJECTS))
    subject = rng.choice(SUBJECTS[agency])
    parts = [rng.choice(REGION_KEYWORDS), subject, rng.choice(PLACES), rng.choice(TAILS)]
    text = " ".join(p.strip() for p in parts if p.strip())
    if rng.random() < 0.2:
        text = text.upper()
    return text, agency


def sender_number(index: int, run: int) -> str:
    """A valid Indonesian mobile number, unique per (run, index) for up to 10^7 messages.

    The acknowledgement carries only the number and the tracking id, so a
    number that is unique per message is what matches a reply to its SMS.
    """
    prefix = ("812", "813", "821", "822", "852", "853", "857", "858")[run % 8]
    return f"+62{prefix}{(run // 8) % 10}{index:07d}"
