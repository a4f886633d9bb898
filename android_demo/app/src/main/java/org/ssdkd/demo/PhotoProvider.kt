package org.ssdkd.demo

import android.content.ContentProvider
import android.content.ContentValues
import android.content.Context
import android.database.Cursor
import android.database.MatrixCursor
import android.net.Uri
import android.os.ParcelFileDescriptor
import android.provider.OpenableColumns
import java.io.File
import java.io.FileNotFoundException

/**
 * Serves the one file the camera app writes the full-resolution photo into (`EXTRA_OUTPUT`). A `file://` URI
 * would crash on API 24+ and AndroidX's FileProvider is not used (no AndroidX), so this is the minimal provider.
 * Not exported: access is granted per intent with FLAG_GRANT_WRITE_URI_PERMISSION.
 */
class PhotoProvider : ContentProvider() {
    override fun onCreate(): Boolean = true

    private fun fileFor(uri: Uri): File {
        val ctx = context ?: throw FileNotFoundException("provider not attached")
        if (uri.lastPathSegment != CAPTURE_NAME) throw FileNotFoundException("no such file: $uri")
        return captureFile(ctx)
    }

    override fun openFile(uri: Uri, mode: String): ParcelFileDescriptor {
        val file = fileFor(uri)
        file.parentFile?.mkdirs()
        return ParcelFileDescriptor.open(file, ParcelFileDescriptor.parseMode(mode))
    }

    override fun getType(uri: Uri): String = "image/jpeg"

    override fun query(
        uri: Uri,
        projection: Array<String>?,
        selection: String?,
        selectionArgs: Array<String>?,
        sortOrder: String?,
    ): Cursor {
        val file = fileFor(uri)
        val columns = projection ?: arrayOf(OpenableColumns.DISPLAY_NAME, OpenableColumns.SIZE)
        val row = columns.map<String, Any?> {
            when (it) {
                OpenableColumns.DISPLAY_NAME -> file.name
                OpenableColumns.SIZE -> file.length()
                else -> null
            }
        }
        return MatrixCursor(columns, 1).apply { addRow(row.toTypedArray()) }
    }

    override fun insert(uri: Uri, values: ContentValues?): Uri? = null

    override fun delete(uri: Uri, selection: String?, selectionArgs: Array<String>?): Int = 0

    override fun update(uri: Uri, values: ContentValues?, selection: String?, selectionArgs: Array<String>?): Int = 0

    companion object {
        const val CAPTURE_NAME = "capture.jpg"

        fun authority(context: Context): String = context.packageName + ".photos"

        fun captureFile(context: Context): File = File(File(context.cacheDir, "captures"), CAPTURE_NAME)

        fun captureUri(context: Context): Uri = Uri.parse("content://${authority(context)}/$CAPTURE_NAME")
    }
}
