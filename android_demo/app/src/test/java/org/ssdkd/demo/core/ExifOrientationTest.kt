package org.ssdkd.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** EXIF orientations must re-orient pixels exactly like `PIL.ImageOps.exif_transpose` in `load_rgb`. */
class ExifOrientationTest {
    private fun pack(rgb: IntArray): IntArray =
        IntArray(rgb.size / 3) { (0xFF shl 24) or (rgb[3 * it] shl 16) or (rgb[3 * it + 1] shl 8) or rgb[3 * it + 2] }

    @Test
    fun allEightOrientationsMatchPillow() {
        val cases = Golden.objects(Golden.manifest.getJSONArray("exif"))
        assertEquals((1..8).toList(), cases.map { it.getInt("orientation") })
        for (case in cases) {
            val o = case.getInt("orientation")
            val (pixels, w, h) = ExifOrientation.apply(
                pack(Golden.ints(case.getJSONArray("rgb"))),
                case.getInt("width"),
                case.getInt("height"),
                o,
            )
            assertEquals("orientation $o width", case.getInt("expected_width"), w)
            assertEquals("orientation $o height", case.getInt("expected_height"), h)
            assertArrayEquals("orientation $o pixels", pack(Golden.ints(case.getJSONArray("expected_rgb"))), pixels)
        }
    }

    @Test
    fun unknownOrientationIsIdentity() {
        val px = intArrayOf(1, 2, 3, 4, 5, 6)
        for (o in listOf(0, 9, -1)) assertArrayEquals(px, ExifOrientation.apply(px, 3, 2, o).first)
    }

    /** The app decodes only the raw region under the centre square, then re-orients it: same model input. */
    @Test
    fun cropThenOrientEqualsOrientThenCrop() {
        val size = 16
        val rawW = 53
        val rawH = 38
        val raw = IntArray(rawW * rawH) { (0xFF shl 24) or ((it * 7919) and 0xFFFFFF) }
        for (o in 1..8) {
            val (full, w, h) = ExifOrientation.apply(raw, rawW, rawH, o)
            val expected = ImagePipeline.resizeCenterCrop(PixelImage.fromArgb(full, w, h), size)

            val crop = ImagePipeline.crop(h, w, size)
            val rect = PixelRect(crop.left, crop.top, crop.left + crop.square, crop.top + crop.square)
            val r = ExifOrientation.rawRect(o, rawW, rawH, rect)
            assertEquals(crop.square, r.width)
            assertEquals(crop.square, r.height)
            assertTrue("orientation $o: $r outside the raw image", r.left >= 0 && r.top >= 0 && r.right <= rawW && r.bottom <= rawH)
            val region = IntArray(r.width * r.height) { raw[(r.top + it / r.width) * rawW + r.left + it % r.width] }
            val (sq, sw, sh) = ExifOrientation.apply(region, r.width, r.height, o)
            val actual = ImagePipeline.resizeCenterCrop(PixelImage.fromArgb(sq, sw, sh), size)
            assertArrayEquals("orientation $o", expected, actual, 0.0)
        }
    }
}
