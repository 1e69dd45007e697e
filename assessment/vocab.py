"""Vietnamese labels for the input vocabulary and the statuses (wording only; no legal values live here)."""
from __future__ import annotations

STATUS_VI: dict[str, str] = {
    "poor": "Hộ nghèo",
    "near_poor": "Hộ cận nghèo",
    "average_living": "Hộ có mức sống trung bình",
    "not_poor": "Hộ không thuộc diện nghèo, cận nghèo",
}
AREA_VI: dict[str, str] = {"rural": "nông thôn", "urban": "thành thị"}
HOUSING_VI: dict[str, str] = {
    "durable": "nhà kiên cố",
    "semi_durable": "nhà bán kiên cố",
    "less_durable": "nhà thiếu kiên cố",
    "simple": "nhà đơn sơ",
    "none": "không có nhà ở (ở nhờ, ở tạm)",
}
WATER_VI: dict[str, str] = {
    "piped": "nước máy",
    "drilled_well": "giếng khoan",
    "protected_dug_well": "giếng đào được bảo vệ",
    "protected_spring": "nước khe/mó được bảo vệ",
    "rainwater": "nước mưa",
    "bottled": "nước đóng bình, đóng chai",
    "unprotected_well": "giếng đào không được bảo vệ",
    "unprotected_spring": "nước khe/mó không được bảo vệ",
    "surface_water": "nước sông, kênh, ao, hồ",
    "other": "nguồn nước khác",
}
TOILET_VI: dict[str, str] = {
    "septic": "nhà tiêu tự hoại",
    "semi_septic": "nhà tiêu bán tự hoại",
    "pour_flush": "nhà tiêu thấm dội nước",
    "double_vault": "nhà tiêu hai ngăn",
    "pit": "hố xí đào, hố xí chìm",
    "fish_pond": "cầu tiêu ao cá",
    "none": "không có nhà tiêu",
}
DEVICE_VI: dict[str, str] = {
    "tv": "ti vi",
    "radio": "radio",
    "computer": "máy tính",
    "smartphone": "điện thoại thông minh",
    "phone": "điện thoại thường",
}
WASTE_VI: dict[str, str] = {
    "collected": "được thu gom",
    "self_treated": "được hộ tự xử lý (chôn, ủ, đốt đúng cách)",
    "dumped": "bị vứt, đổ ra môi trường",
}


def vnd(amount: float | int) -> str:
    """Format an amount of đồng the Vietnamese way: 1.500.000 đồng."""
    return f"{round(amount):,} đồng".replace(",", ".")
