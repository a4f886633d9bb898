package org.ssdkd.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.BitmapRegionDecoder
import android.graphics.Matrix
import android.graphics.Rect
import android.media.ExifInterface
import android.net.Uri
import org.ssdkd.demo.core.ExifOrientation
import org.ssdkd.demo.core.ImagePipeline
import org.ssdkd.demo.core.PixelImage
import org.ssdkd.demo.core.PixelRect
import java.io.File
import java.io.FileOutputStream
import java.io.IOException

/** A picked or captured photo: a preview for the screen and the pixels the model will see. */
class LoadedImage(val preview: Bitmap, val pixels: PixelImage, val note: String)

/**
 * Decodes a photo the way `models.preprocessing.load_rgb` reads a file: EXIF orientation applied, alpha dropped.
 * Only the raw region under the model's centre square is decoded at full resolution, so a 12 MP photo needs
 * about 36 MB, not 96; squares above [MAX_SQUARE_PIXELS] are decoded with a power-of-two subsampling.
 */
class ImageLoader(private val resolver: ContentResolver, private val cacheDir: File) {
    /** Copies [uri] into the cache (ExifInterface(String) is the only EXIF reader on API 23) and loads it. */
    fun load(uri: Uri, inputSize: Int): LoadedImage {
        val file = File(cacheDir, "picked-image")
        val input = resolver.openInputStream(uri) ?: throw IOException("cannot open $uri")
        input.use { src -> FileOutputStream(file).use { dst -> src.copyTo(dst) } }
        return load(file, inputSize)
    }

    fun load(file: File, inputSize: Int): LoadedImage {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeFile(file.path, bounds)
        val rawW = bounds.outWidth
        val rawH = bounds.outHeight
        if (rawW <= 0 || rawH <= 0) throw IOException("not an image this phone can decode")
        val orientation = try {
            ExifInterface(file.path).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        } catch (e: IOException) {
            ExifInterface.ORIENTATION_NORMAL
        }
        val (w, h) = ExifOrientation.orientedSize(orientation, rawW, rawH)
        val crop = ImagePipeline.crop(h, w, inputSize)
        val square = PixelRect(crop.left, crop.top, crop.left + crop.square, crop.top + crop.square)
        val raw = ExifOrientation.rawRect(orientation, rawW, rawH, square)
        val sample = sampleSize(crop.square.toLong() * crop.square, MAX_SQUARE_PIXELS)
        val region = decodeRegion(file, raw, sample)
        val pixels = if (region != null) {
            toPixels(region, orientation)
        } else {
            // formats without region decoding: decode everything, orient, and let the pipeline crop
            val full = BitmapFactory.decodeFile(file.path, BitmapFactory.Options().apply { inSampleSize = sample })
                ?: throw IOException("not an image this phone can decode")
            toPixels(full, orientation)
        }
        val note = "${w}x$h photo, model input: centre ${crop.square}x${crop.square}" +
            (if (crop.k > 1) " box-averaged ${crop.k}x${crop.k}" else "") + " -> ${inputSize}x$inputSize" +
            (if (sample > 1) " (decoded at 1/$sample resolution)" else "")
        return LoadedImage(preview(file, orientation, maxOf(rawW, rawH)), pixels, note)
    }

    private fun decodeRegion(file: File, r: PixelRect, sample: Int): Bitmap? =
        try {
            val decoder = BitmapRegionDecoder.newInstance(file.path, false)
            try {
                val opts = BitmapFactory.Options().apply {
                    inSampleSize = sample
                    inPreferredConfig = Bitmap.Config.ARGB_8888
                }
                decoder.decodeRegion(Rect(r.left, r.top, r.right, r.bottom), opts)
            } finally {
                decoder.recycle()
            }
        } catch (e: IOException) {
            null // e.g. GIF/BMP: no region decoder
        }

    private fun toPixels(bitmap: Bitmap, orientation: Int): PixelImage {
        val w = bitmap.width
        val h = bitmap.height
        val argb = IntArray(w * h)
        bitmap.getPixels(argb, 0, w, 0, 0, w, h) // unpremultiplied ARGB
        bitmap.recycle()
        val (oriented, ow, oh) = ExifOrientation.apply(argb, w, h, orientation)
        return PixelImage.fromArgb(oriented, ow, oh)
    }

    private fun preview(file: File, orientation: Int, longSide: Int): Bitmap {
        var sample = 1
        while (longSide / (sample * 2) >= PREVIEW_LONG_SIDE) sample *= 2
        val bitmap = BitmapFactory.decodeFile(file.path, BitmapFactory.Options().apply { inSampleSize = sample })
            ?: throw IOException("not an image this phone can decode")
        val m = previewMatrix(orientation) ?: return bitmap
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, m, true)
    }

    /** Same orientation as [ExifOrientation.apply], for the on-screen preview only. */
    private fun previewMatrix(orientation: Int): Matrix? {
        val m = Matrix()
        when (orientation) {
            ExifInterface.ORIENTATION_FLIP_HORIZONTAL -> m.setScale(-1f, 1f)
            ExifInterface.ORIENTATION_ROTATE_180 -> m.setRotate(180f)
            ExifInterface.ORIENTATION_FLIP_VERTICAL -> m.setScale(1f, -1f)
            ExifInterface.ORIENTATION_TRANSPOSE -> { m.setRotate(90f); m.postScale(-1f, 1f) }
            ExifInterface.ORIENTATION_ROTATE_90 -> m.setRotate(90f)
            ExifInterface.ORIENTATION_TRANSVERSE -> { m.setRotate(-90f); m.postScale(-1f, 1f) }
            ExifInterface.ORIENTATION_ROTATE_270 -> m.setRotate(-90f)
            else -> return null
        }
        return m
    }

    companion object {
        /** Largest centre square decoded at full resolution (4096 x 4096). */
        const val MAX_SQUARE_PIXELS = 4096L * 4096L
        const val PREVIEW_LONG_SIDE = 1024

        /** Smallest power of two that brings [pixels] to at most [max]. */
        fun sampleSize(pixels: Long, max: Long): Int {
            var s = 1
            while (pixels / (s.toLong() * s) > max) s *= 2
            return s
        }
    }
}
