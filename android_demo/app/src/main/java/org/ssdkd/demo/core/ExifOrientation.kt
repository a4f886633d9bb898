package org.ssdkd.demo.core

/** A rectangle in pixel coordinates (right/bottom exclusive). */
data class PixelRect(val left: Int, val top: Int, val right: Int, val bottom: Int) {
    val width: Int get() = right - left
    val height: Int get() = bottom - top
}

/**
 * EXIF orientation (tag 0x0112, values 1..8), applied the way `PIL.ImageOps.exif_transpose` (used by
 * `load_rgb`) applies it: the "oriented" image is what the user sees; the "raw" image is what the file stores.
 */
object ExifOrientation {
    private fun valid(o: Int) = if (o in 1..8) o else 1

    /** True if the orientation swaps width and height (5..8). */
    fun swapsAxes(orientation: Int): Boolean = valid(orientation) >= 5

    /** Size of the oriented image, as (width, height). */
    fun orientedSize(orientation: Int, rawWidth: Int, rawHeight: Int): Pair<Int, Int> =
        if (swapsAxes(orientation)) Pair(rawHeight, rawWidth) else Pair(rawWidth, rawHeight)

    /** Raw-image coordinates (x, y) of the oriented pixel at ([x], [y]). */
    fun toRaw(orientation: Int, rawWidth: Int, rawHeight: Int, x: Int, y: Int): Pair<Int, Int> = when (valid(orientation)) {
        2 -> Pair(rawWidth - 1 - x, y)
        3 -> Pair(rawWidth - 1 - x, rawHeight - 1 - y)
        4 -> Pair(x, rawHeight - 1 - y)
        5 -> Pair(y, x)
        6 -> Pair(y, rawHeight - 1 - x)
        7 -> Pair(rawWidth - 1 - y, rawHeight - 1 - x)
        8 -> Pair(rawWidth - 1 - y, x)
        else -> Pair(x, y)
    }

    /** The raw-image rectangle that holds oriented rectangle [r]. */
    fun rawRect(orientation: Int, rawWidth: Int, rawHeight: Int, r: PixelRect): PixelRect {
        val (ax, ay) = toRaw(orientation, rawWidth, rawHeight, r.left, r.top)
        val (bx, by) = toRaw(orientation, rawWidth, rawHeight, r.right - 1, r.bottom - 1)
        return PixelRect(minOf(ax, bx), minOf(ay, by), maxOf(ax, bx) + 1, maxOf(ay, by) + 1)
    }

    /** Re-orients packed pixels (ARGB ints, or any one-int-per-pixel data); returns (pixels, width, height). */
    fun apply(pixels: IntArray, rawWidth: Int, rawHeight: Int, orientation: Int): Triple<IntArray, Int, Int> {
        require(pixels.size == rawWidth * rawHeight) { "expected ${rawWidth * rawHeight} pixels, got ${pixels.size}" }
        if (valid(orientation) == 1) return Triple(pixels, rawWidth, rawHeight)
        val (w, h) = orientedSize(orientation, rawWidth, rawHeight)
        // the raw index is affine in (x, y): base + x * dx + y * dy
        fun index(x: Int, y: Int) = toRaw(orientation, rawWidth, rawHeight, x, y).let { it.second * rawWidth + it.first }
        val base = index(0, 0)
        val dx = index(1, 0) - base
        val dy = index(0, 1) - base
        val out = IntArray(w * h)
        for (y in 0 until h) {
            var i = base + y * dy
            for (x in 0 until w) {
                out[y * w + x] = pixels[i]
                i += dx
            }
        }
        return Triple(out, w, h)
    }
}
